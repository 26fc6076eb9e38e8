"""A fast yes/no check of a JSON document against a JSON Schema (the subset the dossier schema uses).

`jsonschema` walks a large file-system inventory far slower than parsing it. This module
compiles a schema once into plain Python functions (one per object schema, simple leaf schemas
inlined as expressions) that answer only "valid or not", with built-ins doing the per-entry
work. When the answer is "not valid", the verifier asks `jsonschema` for the messages, so the
slow path runs only on bad input. Compiling refuses any keyword it does not implement
(`UnsupportedSchema`), and the caller then uses `jsonschema` for everything: the fast path can
never be more lenient than the schema says. Tests check the two agree on valid and mutated
dossiers.

Semantics follow JSON Schema draft 2020-12 as `jsonschema` implements it: booleans are not
numbers, 1.0 is an integer, `format` is an annotation, `pattern` is a search with ECMA-262's `$`
(`verifier._schemapatterns`, which also gives the `jsonschema` side, `ecma_validator`).
"""

from __future__ import annotations

import operator
from json import dumps as _dumps
from collections.abc import Callable
from itertools import chain
from typing import Any

from ._schemapatterns import COLUMN_PATTERNS, FAST_PATTERNS, NO_COLON_PATTERNS, pattern_search

__all__ = [
    "UnsupportedSchema", "compile_colon_counter", "compile_schema", "instance_depth_bound", "numbers_within",
]

_IGNORED = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "format", "default", "examples"})
_SIMPLE = frozenset({"type", "const", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum"})
_TYPE_TEST = {
    "object": "type({v}) is dict",
    "array": "type({v}) is list",
    "string": "type({v}) is str",
    "boolean": "type({v}) is bool",
    "null": "{v} is None",
    "number": "type({v}) in _NUMBER",
    "integer": "(type({v}) is int or (type({v}) is float and {v}.is_integer()))",
}


# The keywords the compiled check implements (anything else is UnsupportedSchema).
_OBJECT_AND_COMBINATORS = frozenset({
    "$ref", "required", "properties", "additionalProperties", "propertyNames", "items",
    "oneOf", "anyOf", "allOf", "not",
})


_COUNT_COLONS = operator.methodcaller("count", ":")


def _colons_of_any(value: Any) -> int:
    """The ':' characters of `value` written as JSON: one per object member, plus those inside
    strings (keys and values). The exact definition the compiled counters must agree with."""
    return _dumps(value).count(":")


# Lists at least this long are checked column by column first (see `_Compiler.column`); shorter
# ones go item by item, which costs less for them.
COLUMN_MIN_ITEMS = 8

# For closed objects: the one Python type a JSON type most often arrives as. If every simple
# member has it, one tuple comparison replaces the per-member type tests; otherwise the exact
# per-member tests run (e.g. an integral float is a JSON integer, just not the fast case).
_FAST_TYPE = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}


class UnsupportedSchema(ValueError):
    """The schema uses a keyword this compiler does not implement."""


class _Compiler:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.source: list[str] = []
        self.names: dict[int, str] = {}
        self.constants: dict[str, Any] = {
            "_NUMBER": (int, float), "_MISSING": object(), "_chain": chain.from_iterable,
            "_colons_of_any": _colons_of_any,
        }
        self.columns: dict[int, str] = {}
        self.counters: dict[int, tuple[str, int | None]] = {}
        self.colon_columns: dict[int, str] = {}
        self.branch_counters: dict[int, str] = {}
        self.counting: set[int] = set()  # schemas whose count is being compiled (recursion)

    def constant(self, value: Any) -> str:
        name = f"_c{len(self.constants)}"
        self.constants[name] = value
        return name

    def resolve(self, reference: str) -> dict[str, Any]:
        return _resolve_local(self.root, reference)

    def check(self, schema: Any, var: str) -> str:
        """A boolean expression that is true when `var` is valid against `schema`."""
        if schema is True or schema == {}:
            return "True"
        if schema is False:
            return "False"
        if not isinstance(schema, dict):
            raise UnsupportedSchema(f"schema must be an object or boolean, found {schema!r}")
        keywords = set(schema) - _IGNORED
        if keywords <= _SIMPLE:
            return self.simple(schema, var)
        return f"{self.function(schema)}({var})"

    def simple(self, schema: dict[str, Any], var: str, *, type_known: bool = False) -> str:
        """`type_known`: the caller has checked `var`'s Python type is the schema's single fast
        type (see `_FAST_TYPE`), so the type test itself is left out."""
        tests: list[str] = []
        types: list[str] = []
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            try:
                type_test = "(" + " or ".join(_TYPE_TEST[t].format(v=var) for t in types) + ")"
            except KeyError as exc:
                raise UnsupportedSchema(f"unknown type {exc}") from None
            if not type_known:
                tests.append(type_test)
        # When the type test already passed, the per-keyword type guards are always true.
        is_str = "True" if types == ["string"] else f"type({var}) is str"
        not_str = "False" if types == ["string"] else f"type({var}) is not str"
        not_number = "False" if types in (["number"], ["integer"]) else f"type({var}) not in _NUMBER"
        if "const" in schema:
            value = schema["const"]
            if type(value) is int:
                # JSON Schema equality: 1.0 equals 1, a boolean never equals a number
                tests.append(f"(type({var}) in _NUMBER and {var} == {value!r})")
            elif type(value) in (str, type(None)):
                tests.append(f"{var} is None" if value is None else f"({is_str} and {var} == {value!r})")
            else:
                raise UnsupportedSchema("const is supported for strings, integers and null only")
        if "enum" in schema:
            if not all(type(value) is str for value in schema["enum"]):
                raise UnsupportedSchema("enum is supported for strings only")
            tests.append(f"({is_str} and {var} in {self.constant(frozenset(schema['enum']))})")
        if "pattern" in schema:
            fast = FAST_PATTERNS.get(schema["pattern"])
            if fast is not None:
                tests.append(f"({not_str} or {self.constant(fast)}({var}))")
            else:
                search = self.constant(pattern_search(schema["pattern"]))
                tests.append(f"({not_str} or {search}({var}) is not None)")
        if "minLength" in schema:
            tests.append(f"({not_str} or len({var}) >= {int(schema['minLength'])})")
        if "maxLength" in schema:
            tests.append(f"({not_str} or len({var}) <= {int(schema['maxLength'])})")
        if "minimum" in schema:
            tests.append(f"({not_number} or {var} >= {schema['minimum']!r})")
        if "maximum" in schema:
            tests.append(f"({not_number} or {var} <= {schema['maximum']!r})")
        tests = [test for test in tests if test not in ("(True)", "(False or True)")]
        return "(" + " and ".join(tests or ["True"]) + ")"

    def closed_members(self, properties: dict[str, Any]) -> list[str]:
        """Checks of a closed object's members, all present: fetched in one itemgetter call, and
        the simple members' types compared as one tuple when they have their fast types."""
        names = [f"m{index}" for index in range(len(properties))]
        lines = [f"{', '.join(names)}, = {self.constant(operator.itemgetter(*properties))}(v)"]
        fast: list[tuple[str, dict[str, Any], type]] = []
        slow: list[str] = []
        for name, sub in zip(names, properties.values()):
            keywords = set(sub) - _IGNORED if isinstance(sub, dict) else {"?"}
            kind = sub.get("type") if isinstance(sub, dict) else None
            if keywords <= _SIMPLE and isinstance(kind, str) and kind in _FAST_TYPE:
                fast.append((name, sub, _FAST_TYPE[kind]))
            else:
                test = self.check(sub, name)
                if test != "True":
                    slow.append(f"if not {test}: return False")
        if fast:
            types = self.constant(tuple(python_type for _, _, python_type in fast))
            got = "(" + ", ".join(f"type({name})" for name, _, _ in fast) + ",)"
            quick = [self.simple(sub, name, type_known=True) for name, sub, _ in fast]
            quick = [test for test in quick if test != "(True)"]
            lines.append(f"if {got} == {types}:")
            lines.append(f"    if not ({' and '.join(quick) or 'True'}): return False")
            lines.append("else:")
            lines.extend(f"    if not {self.simple(sub, name)}: return False" for name, sub, _ in fast)
        lines.extend(slow)
        return lines

    # Column checks: a sufficient test for a whole list of values at once. A file-system
    # inventory lists thousands of records of one shape; testing each member as a column with
    # built-ins (set(map(type, ...)), min(map(len, ...)), one regex over the joined strings)
    # costs a fraction of a Python call per record. A column check may answer False for a valid
    # list (a record with its keys in many orders, an integer written 1.0); the caller then
    # checks item by item, so the answer is always exactly the schema's.

    @staticmethod
    def _closed_record(schema: Any) -> bool:
        """A record: a closed object whose members are all required, and no other keyword
        (what the column forms of the check and of the colon count handle)."""
        return (isinstance(schema, dict)
                and set(schema) - _IGNORED <= {"type", "required", "properties", "additionalProperties"}
                and schema.get("type") == "object" and schema.get("additionalProperties") is False
                and isinstance(schema.get("properties"), dict) and bool(schema["properties"])
                and frozenset(schema.get("required", ())) == frozenset(schema["properties"]))

    def dereference(self, schema: Any) -> Any:
        while isinstance(schema, dict) and set(schema) - _IGNORED == {"$ref"}:
            schema = self.resolve(schema["$ref"])
        return schema

    def column(self, schema: Any, var: str) -> str | None:
        """An expression that is true only if every element of the non-empty sequence `var` is
        valid against `schema`; None when this schema has no column form."""
        schema = self.dereference(schema)
        if schema is True or schema == {}:
            return "True"
        if not isinstance(schema, dict):
            return None
        keywords = set(schema) - _IGNORED
        if keywords <= _SIMPLE:
            return self.simple_column(schema, var)
        if self._closed_record(schema):
            name = self.record_column(schema)
            return None if name is None else f"{name}({var})"
        if keywords == {"type", "items"} and schema["type"] == "array":
            name = self.array_column(schema)
            return None if name is None else f"{name}({var})"
        return None

    def simple_column(self, schema: dict[str, Any], var: str, *, type_known: bool = False) -> str | None:
        """`type_known`: the caller has checked every element has the schema's fast type."""
        kind = schema.get("type")
        values = schema["enum"] if "enum" in schema else [schema["const"]] if "const" in schema else None
        if kind is None and values and all(type(value) is str for value in values):
            kind = "string"  # only strings can equal a string enum or const
        if not isinstance(kind, str) or kind not in _FAST_TYPE:
            return None  # the untyped and multi-typed cases stay item by item
        types = self.constant(frozenset({int, float} if kind == "number" else {_FAST_TYPE[kind]}))
        tests = [] if type_known else [f"set(map(type, {var})) <= {types}"]  # non-empty, so never vacuous
        if "const" in schema:
            if kind != "string" or type(schema["const"]) is not str:
                return None
            tests.append(f"set({var}) == {self.constant(frozenset({schema['const']}))}")
        if "enum" in schema:
            if kind != "string" or not all(type(value) is str for value in schema["enum"]):
                return None
            tests.append(f"set({var}) <= {self.constant(frozenset(schema['enum']))}")
        if "pattern" in schema:
            if kind != "string":
                return None
            whole = COLUMN_PATTERNS.get(schema["pattern"])
            if whole is not None:
                tests.append(f"{self.constant(whole)}({var})")
            else:
                search = self.constant(pattern_search(schema["pattern"]))
                tests.append(f"all(map({search}, {var}))")
        for keyword, function, operator_ in (("minLength", "min", ">="), ("maxLength", "max", "<=")):
            if keyword in schema:
                if kind != "string":
                    return None
                tests.append(f"{function}(map(len, {var})) {operator_} {int(schema[keyword])}")
        for keyword, function, operator_ in (("minimum", "min", ">="), ("maximum", "max", "<=")):
            if keyword in schema:
                if kind not in ("number", "integer"):
                    return None
                tests.append(f"{function}({var}) {operator_} {schema[keyword]!r}")
        return "(" + " and ".join(tests or ["True"]) + ")"

    def record_column(self, schema: dict[str, Any]) -> str | None:
        """A function checking a column of closed objects whose members are all required."""
        key = id(schema)
        if key in self.columns:
            return self.columns[key]
        properties = schema["properties"]
        names = list(properties)
        members = [self.column(sub, f"columns{index}") for index, sub in enumerate(properties.values())]
        if any(member is None for member in members):
            return None
        name = f"_r{len(self.columns)}"
        self.columns[key] = name
        # Numeric members with the same type and bounds (a file's uid, gid, inode, size, mode)
        # are tested as one chained column: one type set, one min, one max for all of them.
        # String members likewise share one type test; their other tests stay per column.
        groups: dict[tuple[Any, ...], list[int]] = {}
        strings: list[int] = []
        for index, sub in enumerate(properties.values()):
            sub = self.dereference(sub)
            if not isinstance(sub, dict):
                continue
            if (set(sub) - _IGNORED <= {"type", "minimum", "maximum"}
                    and sub.get("type") in ("integer", "number")):
                groups.setdefault((sub["type"], sub.get("minimum"), sub.get("maximum")), []).append(index)
            elif set(sub) - _IGNORED <= _SIMPLE and sub.get("type") == "string":
                strings.append(index)
        grouped = {index for indexes in groups.values() if len(indexes) > 1 for index in indexes}
        if len(strings) > 1:
            grouped.update(strings)
            for index in strings:
                members[index] = self.simple_column(self.dereference(list(properties.values())[index]),
                                                    f"columns{index}", type_known=True) or "False"
        # Every dict has exactly len(names) keys and each name fetches (a missing one raises
        # KeyError): so each dict's keys are exactly the names.
        lines = [f"def {name}(c):"]
        if len(names) > 1:
            # One call per record fetches all members, zip transposes them into columns. Only a
            # dict has every member by name (KeyError: one missing; TypeError: not an object;
            # ValueError: no records); then the lengths say no member is extra.
            getter = self.constant(operator.itemgetter(*names))
            targets = ", ".join(f"columns{index}" for index in range(len(names)))
            lines += ["    try:", f"        {targets}, = zip(*map({getter}, c))",
                      "    except (KeyError, TypeError, ValueError):", "        return not c",
                      f"    if set(map(len, c)) != {{{len(names)}}}: return False"]
        else:
            getter = self.constant(operator.itemgetter(names[0]))
            lines += ["    if set(map(type, c)) != {dict} or set(map(len, c)) != {1}: return False",
                      "    try:", f"        columns0 = list(map({getter}, c))",
                      "    except KeyError:", "        return False"]
        if len(strings) > 1:
            joined = "_chain((" + ", ".join(f"columns{index}" for index in strings) + ",))"
            lines.append(f"    if not set(map(type, {joined})) <= {self.constant(frozenset({str}))}: return False")
        for index, member in enumerate(members):
            if member not in ("True", "(True)") and (index not in grouped or index in strings):
                lines.append(f"    if not {member}: return False")
        for (kind, low, high), indexes in groups.items():
            if len(indexes) < 2:
                continue
            joined = "_chain((" + ", ".join(f"columns{index}" for index in indexes) + ",))"
            types = self.constant(frozenset({int, float} if kind == "number" else {int}))
            tests = [f"set(map(type, {joined})) <= {types}"]
            if low is not None:
                tests.append(f"min({joined}) >= {low!r}")
            if high is not None:
                tests.append(f"max({joined}) <= {high!r}")
            lines.append(f"    if not ({' and '.join(tests)}): return False")
        lines.append("    return True")
        self.source.extend(lines)
        return name

    def array_column(self, schema: dict[str, Any]) -> str | None:
        """A function checking a column of arrays: their items, all together, as one column."""
        key = id(schema)
        if key in self.columns:
            return self.columns[key]
        items = self.column(schema["items"], "items")
        if items is None:
            return None
        name = f"_a{len(self.columns)}"
        self.columns[key] = name
        self.source.extend([
            f"def {name}(c):",
            "    if set(map(type, c)) != {list}: return False",
            "    items = tuple(_chain(c))",
            f"    return not items or {items}",
        ])
        return name

    def function(self, schema: dict[str, Any]) -> str:
        key = id(schema)
        if key in self.names:
            return self.names[key]
        if set(schema) - _IGNORED == {"$ref"}:
            target = self.resolve(schema["$ref"])
            if not (set(target) - _IGNORED) <= _SIMPLE:
                self.names[key] = self.function(target)  # a bare $ref is its target
                return self.names[key]
        name = f"_f{len(self.names)}"
        self.names[key] = name  # before compiling the body: recursive schemas refer to it
        unknown = set(schema) - _IGNORED - _SIMPLE - _OBJECT_AND_COMBINATORS
        if unknown:
            raise UnsupportedSchema(f"unsupported keywords {sorted(unknown)}")
        body: list[str] = []
        simple = {k: v for k, v in schema.items() if k in _SIMPLE}
        only_object = simple == {"type": "object"}
        if only_object:
            body.append("if type(v) is not dict: return False")
        elif simple:
            body.append(f"if not {self.simple(simple, 'v')}: return False")
        if "$ref" in schema:
            body.append(f"if not {self.check(self.resolve(schema['$ref']), 'v')}: return False")
        for keyword, combine in (("allOf", "all"), ("anyOf", "any")):
            if keyword in schema:
                parts = [self.check(sub, "v") for sub in schema[keyword]]
                body.append(f"if not {combine}(({', '.join(parts)},)): return False")
        if "oneOf" in schema:
            parts = [f"(1 if {self.check(sub, 'v')} else 0)" for sub in schema["oneOf"]]
            body.append(f"if {' + '.join(parts)} != 1: return False")
        if "not" in schema:
            body.append(f"if {self.check(schema['not'], 'v')}: return False")
        object_body: list[str] = []
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties", True)
        required_set = frozenset(schema.get("required", ()))
        if additional is False and required_set == frozenset(properties):
            # a closed object whose members are all required: one set comparison
            object_body.append(f"if v.keys() != {self.constant(required_set)}: return False")
        else:
            if required_set:
                object_body.append(f"if not {self.constant(required_set)} <= v.keys(): return False")
            if additional is False:
                object_body.append(f"if not v.keys() <= {self.constant(frozenset(properties))}: return False")
        required = frozenset(schema.get("required", ()))
        closed_all_required = additional is False and required_set == frozenset(properties) and properties
        if closed_all_required and len(properties) > 1:
            object_body.extend(self.closed_members(properties))
            properties = {}  # handled
        for prop, sub in properties.items():
            test = self.check(sub, "x")
            if test == "True":
                continue
            if prop in required:  # checked present above
                object_body.append(f"x = v[{prop!r}]")
                object_body.append(f"if not {test}: return False")
            else:
                object_body.append(f"x = v.get({prop!r}, _MISSING)")
                object_body.append(f"if x is not _MISSING and not {test}: return False")
        if additional not in (True, False):
            known = self.constant(frozenset(properties))
            object_body.append("for k, x in v.items():")
            object_body.append(f"    if k not in {known} and not {self.check(additional, 'x')}: return False")
        if "propertyNames" in schema:
            object_body.append("for x in v:")
            object_body.append(f"    if not {self.check(schema['propertyNames'], 'x')}: return False")
        if object_body and only_object:
            body.extend(object_body)
        elif object_body:
            body.append("if type(v) is dict:")
            body.extend("    " + line for line in object_body)
        if "items" in schema:
            if not isinstance(schema["items"], (dict, bool)):
                raise UnsupportedSchema("items must be a schema (draft 2020-12)")
            item_test = self.check(schema["items"], "x")
            column = self.column(schema["items"], "v")
            body.append("if type(v) is list:")
            if column is not None and item_test != "True":
                # the column test first; item by item only when it does not say yes
                body.append(f"    if len(v) >= {COLUMN_MIN_ITEMS} and {column}: return True")
            body.append("    for x in v:")
            body.append(f"        if not {item_test}: return False")
        self.source.append(f"def {name}(v):")
        self.source.extend("    " + line for line in body)
        self.source.append("    return True")
        return name

    # Colon counts. A JSON text holds one ':' per object member plus those inside its strings;
    # so does the value it parses to, unless a duplicate key made the parser drop members (or
    # a \u003a escape wrote a colon without one). The verifier compares the two counts instead
    # of looking at every object's keys while parsing (see `_strictjson.colons_account_for`).
    # For an instance known to be valid, the schema fixes most of its count: a closed object
    # with all members required has a fixed number of members, a base64 string has no colon,
    # a list of such records counts `len(list)` times the record's count. What the schema
    # does not fix is counted from the instance (`len(v)`, `str.count`, `_colons_of_any`), so
    # the count is exact for every valid instance, whatever the schema leaves open.

    def colons(self, schema: Any, var: str) -> tuple[str, int | None]:
        """(expression, constant): an expression for the ':' count of `var`, valid against
        `schema`, and that count when it is the same for every valid instance (else None)."""
        schema = self.dereference(schema)
        if schema is False:
            return "0", 0  # nothing is valid: never asked
        if not isinstance(schema, dict) or not set(schema) - _IGNORED:
            return f"_colons_of_any({var})", None
        unknown = set(schema) - _IGNORED - _SIMPLE - _OBJECT_AND_COMBINATORS
        if unknown:
            raise UnsupportedSchema(f"unsupported keywords {sorted(unknown)}")
        if "const" in schema or "enum" in schema:
            values = schema["enum"] if "enum" in schema else [schema["const"]]
            counts = {_colons_of_any(value) for value in values}
            if len(counts) == 1:
                count = counts.pop()
                return str(count), count
            return f"_colons_of_any({var})", None
        structural = {"type", "properties", "additionalProperties", "items", "pattern"} & set(schema)
        if not structural:
            # Only combinators (or a $ref with siblings): any schema the instance is valid
            # against gives the exact count; choose one that fixes the most.
            if "$ref" in schema:
                return self.colons(self.resolve(schema["$ref"]), var)
            if "allOf" in schema and schema["allOf"]:
                return self.colons(schema["allOf"][0], var)
            for keyword in ("oneOf", "anyOf"):
                if keyword in schema and schema[keyword]:
                    return self.branch_colons(schema, keyword, var)
            return f"_colons_of_any({var})", None
        kinds = schema.get("type")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds) if kinds is not None else None
        possible = set(kinds) if kinds is not None else {"object", "array", "string", "number"}
        parts: list[tuple[str, str, int | None]] = []  # (python type test, expression, constant)
        if "object" in possible:
            parts.append(("dict", *self.object_colons(schema, var)))
        if "array" in possible:
            parts.append(("list", *self.array_colons(schema, var)))
        if "string" in possible:
            if schema.get("pattern") in NO_COLON_PATTERNS:
                parts.append(("str", "0", 0))
            else:
                parts.append(("str", f"{var}.count(':')", None))
        if not possible & {"object", "array", "string"}:
            return "0", 0  # numbers, booleans and null have no colon
        if len(parts) == 1 and possible <= {"object", "array", "string"}:
            return parts[0][1], parts[0][2]
        expression = "0"
        for python_type, part, _ in reversed(parts):
            expression = f"({part} if type({var}) is {python_type} else {expression})"
        return expression, None

    def counter_function(self, schema: Any, counted: tuple[str, int | None] | None = None) -> tuple[str, int | None]:
        """A named function counting colons of instances of `schema` (for map() and recursion).
        `counted`: the schema's `colons(schema, "v")`, when the caller has it already."""
        key = id(schema)
        if key in self.counters:
            return self.counters[key]
        name = f"_k{len(self.counters)}"
        self.counters[key] = (name, None)  # before the body: recursive schemas call it
        expression, constant = counted if counted is not None else self.colons(schema, "v")
        self.counters[key] = (name, constant)
        self.source.extend([f"def {name}(v):", f"    return {expression}"])
        return name, constant

    def branch_colons(self, schema: dict[str, Any], keyword: str, var: str) -> tuple[str, int | None]:
        """oneOf/anyOf: the instance is valid against at least one branch. The branches after
        the first are tested with the compiled check; if none holds, the first one does."""
        branches = schema[keyword]
        counted = [self.colons(branch, "v") for branch in branches]
        constants = {constant for _, constant in counted}
        if len(constants) == 1 and None not in constants:
            constant = constants.pop()
            return str(constant), constant
        key = id(schema)
        if key not in self.branch_counters:
            name = self.branch_counters[key] = f"_kb{len(self.branch_counters)}"
            lines = [f"def {name}(v):"]
            for branch, (expression, _) in zip(branches[1:], counted[1:]):
                lines.append(f"    if {self.check(branch, 'v')}: return {expression}")
            lines.append(f"    return {counted[0][0]}")
            self.source.extend(lines)
        return f"{self.branch_counters[key]}({var})", None

    def object_colons(self, schema: dict[str, Any], var: str) -> tuple[str, int | None]:
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties", True)
        required = frozenset(schema.get("required", ()))
        members = {name: self.member_colons(sub) for name, sub in properties.items()}
        if additional is False and required == frozenset(properties) and schema.get("type") == "object":
            # Exactly these members: a separator each, the colons in their names, their values.
            fixed = sum(1 + name.count(":") for name in properties)
            terms = [f"{name}({var}[{member!r}])" for member, (name, constant) in members.items() if constant is None]
            fixed += sum(constant for _, constant in members.values() if constant is not None)
            if not terms:
                return str(fixed), fixed
            return "(" + " + ".join([str(fixed), *terms]) + ")", None
        # Members vary: count them and their names' colons from the instance.
        terms = [f"len({var})", f"''.join({var}).count(':')"]
        for member, (name, constant) in members.items():
            if constant == 0:
                continue
            value = str(constant) if constant is not None else f"{name}({var}[{member!r}])"
            terms.append(f"({value} if {member!r} in {var} else 0)")
        if additional is not False:
            name, constant = self.member_colons(additional)
            known = self.constant(frozenset(properties))
            if constant is not None:
                if constant:  # the same count for every other member
                    terms.append(f"{constant} * len({var}.keys() - {known})")
            else:
                terms.append(f"sum([{name}(x) for k, x in {var}.items() if k not in {known}])")
        return "(" + " + ".join(terms) + ")", None

    def member_colons(self, schema: Any) -> tuple[str, int | None]:
        """A function name counting one member's or item's colons, and its constant if fixed."""
        schema = self.dereference(schema)
        key = id(schema)
        if key in self.counters:
            name, constant = self.counters[key]
            return ("", constant) if constant is not None else (name, None)
        if key in self.counting:  # a recursive schema: a named function breaks the cycle
            return self.counter_function(schema)
        self.counting.add(key)
        try:
            expression, constant = self.colons(schema, "v")
        finally:
            self.counting.discard(key)
        if constant is not None:
            return "", constant
        if expression == "v.count(':')":
            return self.constant(_COUNT_COLONS), None  # a C call, also inside map()
        return self.counter_function(schema, (expression, constant))

    def array_colons(self, schema: dict[str, Any], var: str) -> tuple[str, int | None]:
        items = self.dereference(schema.get("items", True))
        name, constant = self.member_colons(items)
        if constant is not None:
            return (f"{constant} * len({var})" if constant else "0"), (None if constant else 0)
        column = self.column_colons(items)
        if column is not None:
            return f"{column}({var})", None
        return f"sum(map({name}, {var}))", None


    def column_colons(self, schema: Any) -> str | None:
        """For a list of closed records (a file-system inventory): a function counting the
        whole list a member column at a time, with C-speed joins instead of a call per record."""
        if not self._closed_record(schema):
            return None
        key = id(schema)
        if key in self.colon_columns:
            return self.colon_columns[key]
        name = f"_kc{len(self.colon_columns)}"
        self.colon_columns[key] = name
        properties = schema["properties"]
        fixed = sum(1 + member.count(":") for member in properties)
        lines = [f"def {name}(c):", f"    total = {fixed} * len(c)"]
        for member, sub in properties.items():
            sub = self.dereference(sub)
            expression, constant = self.colons(sub, "x")
            if constant is not None:
                if constant:
                    lines.append(f"    total += {constant} * len(c)")
                continue
            getter = self.constant(operator.itemgetter(member))
            if expression == "x.count(':')":
                lines.append(f"    total += ''.join(map({getter}, c)).count(':')")
                continue
            nested = self.column_colons(sub)
            if nested is not None:
                lines.append(f"    total += {nested}(list(map({getter}, c)))")
            else:
                function, _ = self.counter_function(sub)
                lines.append(f"    total += sum(map({function}, map({getter}, c)))")
        lines.append("    return total")
        self.source.extend(lines)
        return name



def compile_schema(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """Compile `schema` into a function returning whether an instance is valid.

    Raises UnsupportedSchema if the schema uses anything this compiler does not implement.
    """
    compiler = _Compiler(schema)
    entry = compiler.function(schema)
    namespace = dict(compiler.constants)
    exec(compile("\n".join(compiler.source), "<dossier-schema>", "exec"), namespace)  # noqa: S102 - our own generated code
    return namespace[entry]


def compile_colon_counter(schema: dict[str, Any]) -> Callable[[Any], int]:
    """Compile `schema` into a function returning, for an instance VALID against it, the number
    of ':' characters the instance holds written as JSON (`json.dumps(v).count(":")`): one per
    object member plus those inside its strings. For an invalid instance the answer means
    nothing. Raises UnsupportedSchema where `compile_schema` would.
    """
    compiler = _Compiler(schema)
    expression, _ = compiler.colons(schema, "v")
    compiler.source.extend(["def _count(v):", f"    return {expression}"])
    namespace = dict(compiler.constants)
    exec(compile("\n".join(compiler.source), "<dossier-colons>", "exec"), namespace)  # noqa: S102 - our own generated code
    return namespace["_count"]


_SCALAR_TYPES = frozenset({"string", "number", "integer", "boolean", "null"})


def instance_depth_bound(schema: dict[str, Any]) -> int | None:
    """The deepest nesting (as `_strictjson.check_depth` counts it: a scalar 0, `{}` 1) of any
    instance valid against `schema`, or None when the schema allows any depth.

    A document that passed the schema check therefore needs no separate depth count when the
    bound is within the policy's limit. An upper bound, not exact: where it cannot tell (no
    `type`, `not`, a recursive `$ref`), it says unbounded.
    """

    def bound(node: Any, visiting: frozenset[int]) -> int | None:
        if node is False:
            return 0  # nothing is valid: any bound holds
        if not isinstance(node, dict) or id(node) in visiting:
            return None  # `true`, `{}` or recursion: any depth
        visiting = visiting | {id(node)}
        conjuncts: list[int | None] = []  # an instance satisfies every one: the least bound holds
        kinds = node.get("type")
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else kinds
            per_kind: list[int | None] = []
            for kind in kinds:
                if kind in _SCALAR_TYPES:
                    per_kind.append(0)
                elif kind == "object":
                    extra = node.get("additionalProperties", True)
                    members = [bound(sub, visiting) for sub in node.get("properties", {}).values()]
                    members.append(0 if extra is False else bound(extra, visiting))
                    per_kind.append(None if None in members else 1 + max(members))
                elif kind == "array":
                    items = bound(node.get("items", True), visiting)
                    per_kind.append(None if items is None else 1 + items)
                else:
                    per_kind.append(None)
            conjuncts.append(None if None in per_kind else max(per_kind))
        if "const" in node or "enum" in node:
            values = node["enum"] if "enum" in node else [node["const"]]
            conjuncts.append(0 if all(not isinstance(value, (dict, list)) for value in values) else None)
        if "$ref" in node:
            try:
                target = _resolve_local(schema, node["$ref"])
            except UnsupportedSchema:
                target = True  # not followed: unbounded
            conjuncts.append(bound(target, visiting))
        for sub in node.get("allOf", ()):
            conjuncts.append(bound(sub, visiting))
        for keyword in ("oneOf", "anyOf"):  # valid against one branch at least: the largest bound
            if keyword in node:
                branches = [bound(sub, visiting) for sub in node[keyword]]
                conjuncts.append(None if None in branches else max(branches))
        known = [value for value in conjuncts if value is not None]
        return min(known) if known else None

    return bound(schema, frozenset())


def numbers_within(schema: dict[str, Any], low: int, high: int) -> bool:
    """Whether every number in every instance valid against `schema` lies within [low, high].

    Like `instance_depth_bound`, a sound under-approximation: where it cannot tell (an open
    object, untyped items, recursion, `not`), it says False.
    """

    def bounded(node: Any, visiting: frozenset[int]) -> bool:
        if node is False:
            return True
        if not isinstance(node, dict) or id(node) in visiting:
            return False
        if set(node) - _IGNORED - _SIMPLE - _OBJECT_AND_COMBINATORS:
            return False  # a keyword not weighed here (patternProperties, prefixItems, ...)
        visiting = visiting | {id(node)}
        proofs: list[bool] = []  # an instance satisfies every part: one proof is enough
        if "const" in node or "enum" in node:
            values = node["enum"] if "enum" in node else [node["const"]]
            proofs.append(all(type(value) in (str, bool, type(None))
                              or (type(value) in (int, float) and low <= value <= high) for value in values))
        kinds = node.get("type")
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else kinds
            per_kind = []
            for kind in kinds:
                if kind in ("number", "integer"):
                    per_kind.append(low <= node.get("minimum", low - 1) and node.get("maximum", high + 1) <= high)
                elif kind in ("string", "boolean", "null"):
                    per_kind.append(True)
                elif kind == "object":
                    extra = node.get("additionalProperties", True)
                    per_kind.append(all(bounded(sub, visiting) for sub in node.get("properties", {}).values())
                                    and bounded(extra, visiting))
                elif kind == "array":
                    per_kind.append(bounded(node.get("items", True), visiting))
                else:
                    per_kind.append(False)
            proofs.append(all(per_kind))
        if "$ref" in node:
            try:
                proofs.append(bounded(_resolve_local(schema, node["$ref"]), visiting))
            except UnsupportedSchema:
                pass
        proofs.extend(bounded(sub, visiting) for sub in node.get("allOf", ()))
        for keyword in ("oneOf", "anyOf"):
            if keyword in node:
                proofs.append(all(bounded(sub, visiting) for sub in node[keyword]))
        return any(proofs)

    return bounded(schema, frozenset())


def _resolve_local(root: dict[str, Any], reference: str) -> Any:
    """The subschema a local `$ref` ("#/a/b") points to; UnsupportedSchema for any other."""
    if not reference.startswith("#/"):
        raise UnsupportedSchema(f"only local $ref is supported, found {reference!r}")
    node: Any = root
    for part in reference[2:].split("/"):
        node = node[part]
    return node

// Optional: sort the table in the page on a header click, without asking the server again.
// Without JavaScript the same headers are links that ask the server for the sorted page.
document.querySelectorAll('table.sortable th a[data-sort]').forEach(function (link) {
  link.addEventListener('click', function (event) {
    var th = link.closest('th'), table = th.closest('table'), body = table.tBodies[0];
    var column = Array.prototype.indexOf.call(th.parentNode.children, th);
    var ascending = th.getAttribute('aria-sort') !== 'ascending';
    var rows = Array.prototype.slice.call(body.rows).filter(function (row) { return row.cells.length > column; });
    if (!rows.length || rows[0].cells[column].dataset.sort === undefined) { return; }
    event.preventDefault();
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.sort, y = b.cells[column].dataset.sort;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return ascending ? c : -c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});

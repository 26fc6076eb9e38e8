"""Names the service tests share: the devices of the collected fleet and what each went through."""

ITEMS = ("packages", "reboot-history", "system-inventory", "filesystem-inventory")
#: Trusted twice; tampered (data changed after signing) on the second poll; unreachable then.
GOOD, TAMPERED, UNREACHABLE = "xr-0001", "xr-0002", "xr-0003"

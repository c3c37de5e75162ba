"""Host gatherers: hardware, firmware, disks and network interfaces, read through a `Runner`."""

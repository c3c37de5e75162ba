"""Inventory of what has no medsec agent: network and security devices over SNMP (`snmp`,
`targets`) and servers over SSH (the host gatherers through `ssh.SshRunner`, every command
checked against the read-only allow-list in `readonly`).
"""

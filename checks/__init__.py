"""The result model, the check registry and runner, every check, and the clause catalogs."""

"""The words every layer speaks: the error tree, text for messages, the string enum, templates, the
log and where the package's files are. Imports nothing of the harness."""

"""The web console (issue #14): server-rendered views of cases and the disclosure log."""

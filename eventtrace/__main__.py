from eventtrace.cli import entry

entry()

"""The embedded development stack: parts crewbus starts itself when nothing is configured."""

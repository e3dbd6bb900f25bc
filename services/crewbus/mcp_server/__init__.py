"""crewbus as an MCP server (`crewbus mcp serve`); see `server`."""

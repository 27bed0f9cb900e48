"""The assistant: providers behind one protocol, the context, the tools and the service."""

"""The bus runtime: connecting, the JetStream topology, codecs and the pull worker."""

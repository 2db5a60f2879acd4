# Empty compiler generated dependencies file for fdn-bench.
# This may be replaced when dependencies are built.

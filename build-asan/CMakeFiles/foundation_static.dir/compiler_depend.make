# Empty compiler generated dependencies file for foundation_static.
# This may be replaced when dependencies are built.

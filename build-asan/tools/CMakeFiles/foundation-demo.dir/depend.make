# Empty dependencies file for foundation-demo.
# This may be replaced when dependencies are built.

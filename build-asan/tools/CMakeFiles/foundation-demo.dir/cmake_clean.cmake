file(REMOVE_RECURSE
  "CMakeFiles/foundation-demo.dir/foundation-demo.c.o"
  "CMakeFiles/foundation-demo.dir/foundation-demo.c.o.d"
  "foundation-demo"
  "foundation-demo.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/foundation-demo.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()

file(REMOVE_RECURSE
  "CMakeFiles/test_corrupt.dir/test_corrupt.c.o"
  "CMakeFiles/test_corrupt.dir/test_corrupt.c.o.d"
  "test_corrupt"
  "test_corrupt.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/test_corrupt.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()

file(REMOVE_RECURSE
  "CMakeFiles/test_segment.dir/test_segment.c.o"
  "CMakeFiles/test_segment.dir/test_segment.c.o.d"
  "test_segment"
  "test_segment.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/test_segment.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()

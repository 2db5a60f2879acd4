file(REMOVE_RECURSE
  "CMakeFiles/fdn-bench.dir/bench_lookup.c.o"
  "CMakeFiles/fdn-bench.dir/bench_lookup.c.o.d"
  "fdn-bench"
  "fdn-bench.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/fdn-bench.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()

# plot.gp - drawn by plot.sh: dir (data files) and out (PNG) are set on the
# command line; vars.gp holds the column counts and the load average.
load dir.'/vars.gp'
set terminal pngcairo size 1800,640 font ",10" noenhanced
set output out
set multiplot layout 1,3 title "Foundation benchmarks (".loads.")"
set key outside bottom center horizontal maxrows 4 font ",8"
set grid
set logscale xy
set xrange [xmin:xmax]
set format y "%.0s%c"
set xlabel "entries"
set ylabel "lookups/s"
set xtics ("10k" 10000, "100k" 100000, "1M" 1000000)

set title "lookup hit: throughput against table size"
plot for [i=2:nhit+1] dir.'/hit.dat' using 1:i with linespoints lw 2 pt 7 title columnheader(i)

set title "lookup miss: throughput against table size"
plot for [i=2:nmiss+1] dir.'/miss.dat' using 1:i with linespoints lw 2 pt 7 title columnheader(i)

unset logscale
set xrange [-0.6:1.6]
unset xtics
set xtics
set logscale y
set format y "%g"
set yrange [10:*]
set title "reaper: SIGKILL -> all entries gone (seen by fdn_watch)"
set xlabel "entries owned by the killed process"
set ylabel "microseconds"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set arrow from graph 0, first 1000 to graph 1, first 1000 nohead dt 2 lw 2 lc rgb "red"
set label "target p99 1 ms" at graph 0.02, first 1150 tc rgb "red"
plot dir.'/reaper.dat' using 2:xtic(1) title "p50", '' using 3 title "p99", '' using 4 title "max"
unset multiplot

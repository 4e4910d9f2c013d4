module fx/bench/upstream

go 1.21

module github.com/fastrojan/fastrojan

go 1.26

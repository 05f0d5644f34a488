// Resident memory per idle goroutine, for bench/async (weft's async benchmark).
//
// Usage: go run idle.go N — starts N goroutines that each block receiving
// from one channel, waits until all have started, and prints
// "go N BYTES_PER_GOROUTINE" (growth of resident memory from /proc/self/statm
// divided by N). Then closes the channel and waits for all of them.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		panic(err)
	}
	pages, _ := strconv.ParseInt(strings.Fields(string(b))[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func main() {
	n := 100000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	ch := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	runtime.GC()
	before := rss()
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			<-ch
			done.Done()
		}()
	}
	started.Wait()
	after := rss()
	close(ch)
	done.Wait()
	fmt.Printf("go %d %.0f\n", n, float64(after-before)/float64(n))
}

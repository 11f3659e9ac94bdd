// goetcd: load against an etcd endpoint with etcd's own Go client (clientv3 3.4; one client, so
// one gRPC connection), the reference for the Swift etcd client's numbers. Built in GOPATH mode
// from Debian's golang-etcd-server-dev; see README.md.
//
//	goetcd -endpoints 127.0.0.1:PORT -op put|range|watch|lock [-concurrency N] [-duration SECONDS | -count N]
//
// put: N goroutines, each in a closed loop, Put /bench/<i> with a 100-byte value. range: the keys
// /bench/0 to /bench/<keys-1> are written first, then N goroutines, each in a closed loop, Get one
// of them (a one-key Range, linearizable unless -serializable). watch: one goroutine watches the
// prefix /bench/w/ while another puts /bench/w/<i> one at a time and waits for its event; the
// latency is from just before the Put to the event's arrival at the watcher. lock: N goroutines,
// each in a closed loop, Lock then Unlock a concurrency.Mutex of its own (uncontended), all on one
// session.
//
// It prints one JSON line: op, concurrency, ops, errors, seconds, ops_per_sec, p50_us, p99_us
// (latencies of the successful operations). Each call has a 5 s deadline, and a -count run stops
// after -timeout seconds at the latest. The /bench/ keys are deleted at the end.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	v3sync "go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/pkg/logutil"
	"go.uber.org/zap"
)

const callTimeout = 5 * time.Second

type result struct {
	Op          string  `json:"op"`
	Concurrency int     `json:"concurrency"`
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "goetcd: "+format+"\n", args...)
	os.Exit(1)
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

// percentile of sorted microsecond latencies (nearest rank)
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	if rank < 0 {
		rank = 0
	}
	return round1(sorted[rank])
}

// budget hands out operations: until the deadline, and at most count of them when count > 0.
type budget struct {
	deadline time.Time
	count    int64
	taken    int64
}

func (b *budget) take() bool {
	if time.Now().After(b.deadline) {
		return false
	}
	if b.count > 0 {
		return atomic.AddInt64(&b.taken, 1) <= b.count
	}
	return true
}

func main() {
	endpoints := flag.String("endpoints", "", "etcd endpoint(s) HOST:PORT[,…] (one client)")
	op := flag.String("op", "put", "put, range, watch or lock")
	concurrency := flag.Int("concurrency", 1, "goroutines in a closed loop (put, range)")
	duration := flag.Float64("duration", 5, "seconds to run (unless -count)")
	count := flag.Int64("count", 0, "operations to run in all (overrides -duration)")
	timeout := flag.Float64("timeout", 60, "upper bound in seconds for a -count run")
	keys := flag.Int("keys", 1000, "distinct keys written or read")
	valueSize := flag.Int("value-size", 100, "value size in bytes")
	serializable := flag.Bool("serializable", false, "range: serializable reads")
	flag.Parse()

	var list []string
	for _, e := range strings.Split(*endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			list = append(list, e)
		}
	}
	if len(list) == 0 {
		fail("-endpoints is required")
	}
	if *concurrency < 1 || *keys < 1 || *valueSize < 0 {
		fail("-concurrency and -keys must be at least 1")
	}
	quiet := logutil.DefaultZapLoggerConfig
	quiet.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	client, err := clientv3.New(clientv3.Config{Endpoints: list, DialTimeout: callTimeout, LogConfig: &quiet})
	if err != nil {
		fail("connect: %v", err)
	}
	defer client.Close()

	value := strings.Repeat("v", *valueSize)
	key := func(i int64) string { return "/bench/" + strconv.FormatInt(i%int64(*keys), 10) }
	run := time.Duration(*duration * float64(time.Second))
	if *count > 0 {
		run = time.Duration(*timeout * float64(time.Second))
	}

	var res result
	switch *op {
	case "put":
		res = closedLoop(*concurrency, run, *count, func(i int64) error {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			_, err := client.Put(ctx, key(i), value)
			return err
		})
	case "range":
		for i := int64(0); i < int64(*keys); i++ {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			_, err := client.Put(ctx, key(i), value)
			cancel()
			if err != nil {
				fail("fill %s: %v", key(i), err)
			}
		}
		var opts []clientv3.OpOption
		if *serializable {
			opts = append(opts, clientv3.WithSerializable())
		}
		res = closedLoop(*concurrency, run, *count, func(i int64) error {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			rsp, err := client.Get(ctx, key(i), opts...)
			if err == nil && len(rsp.Kvs) != 1 {
				err = fmt.Errorf("%s: %d values", key(i), len(rsp.Kvs))
			}
			return err
		})
	case "watch":
		res = watchLatency(client, run, *count, int64(*keys), value)
	case "lock":
		// one session (one lease kept alive) for all, and a mutex of its own per goroutine at a
		// time (taken from a pool), so that no lock is contended
		session, err := v3sync.NewSession(client, v3sync.WithTTL(15))
		if err != nil {
			fail("session: %v", err)
		}
		defer session.Close()
		pool := make(chan *v3sync.Mutex, *concurrency)
		for w := 0; w < *concurrency; w++ {
			pool <- v3sync.NewMutex(session, "/bench/lock/"+strconv.Itoa(w))
		}
		res = closedLoop(*concurrency, run, *count, func(i int64) error {
			m := <-pool
			defer func() { pool <- m }()
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			if err := m.Lock(ctx); err != nil {
				return err
			}
			return m.Unlock(ctx)
		})
	default:
		fail("-op must be put, range, watch or lock")
	}
	res.Op = *op

	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	_, err = client.Delete(ctx, "/bench/", clientv3.WithPrefix())
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "goetcd: clean up /bench/: %v\n", err)
	}
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
	if res.Ops == 0 {
		os.Exit(1)
	}
}

// closedLoop runs call from n goroutines, each starting its next call when the last returns.
func closedLoop(n int, run time.Duration, count int64, call func(i int64) error) result {
	b := &budget{deadline: time.Now().Add(run), count: count}
	var next, errs int64
	latencies := make([][]float64, n)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for b.take() {
				i := atomic.AddInt64(&next, 1) - 1
				t0 := time.Now()
				err := call(i)
				if err != nil {
					if atomic.AddInt64(&errs, 1) == 1 {
						fmt.Fprintf(os.Stderr, "goetcd: first error: %v\n", err)
					}
					continue
				}
				latencies[w] = append(latencies[w], float64(time.Since(t0).Nanoseconds())/1000)
			}
		}(w)
	}
	wg.Wait()
	return summarize(n, time.Since(start), latencies, errs)
}

func summarize(n int, elapsed time.Duration, latencies [][]float64, errs int64) result {
	var all []float64
	for _, l := range latencies {
		all = append(all, l...)
	}
	sort.Float64s(all)
	seconds := elapsed.Seconds()
	return result{
		Concurrency: n,
		Ops:         int64(len(all)),
		Errors:      errs,
		Seconds:     math.Round(seconds*1000) / 1000,
		OpsPerSec:   round1(float64(len(all)) / seconds),
		P50us:       percentile(all, 50),
		P99us:       percentile(all, 99),
	}
}

// arrival is a watch event as the watcher saw it.
type arrival struct {
	revision int64
	at       time.Time
}

func watchLatency(client *clientv3.Client, run time.Duration, count, keys int64, value string) result {
	ctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	// clientv3's Watch itself blocks until its stream opens, so it is asked from its own goroutine
	created := make(chan clientv3.WatchChan, 1)
	go func() {
		events := client.Watch(ctx, "/bench/w/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		if rsp, ok := <-events; ok && rsp.Err() == nil && rsp.Created {
			created <- events
		} else {
			fail("watch /bench/w/ was not created: %v", rsp.Err())
		}
	}()
	var events clientv3.WatchChan
	select {
	case events = <-created:
	case <-time.After(callTimeout):
		fail("watch /bench/w/ was not created within %v", callTimeout)
	}
	arrivals := make(chan arrival, 1024)
	go func() {
		for rsp := range events {
			at := time.Now()
			for _, ev := range rsp.Events {
				arrivals <- arrival{revision: ev.Kv.ModRevision, at: at}
			}
		}
		close(arrivals)
	}()

	b := &budget{deadline: time.Now().Add(run), count: count}
	var errs int64
	var latencies []float64
	start := time.Now()
	for i := int64(0); b.take(); i++ {
		k := "/bench/w/" + strconv.FormatInt(i%keys, 10)
		t0 := time.Now()
		putCtx, cancel := context.WithTimeout(context.Background(), callTimeout)
		rsp, err := client.Put(putCtx, k, value)
		cancel()
		if err != nil {
			if errs++; errs == 1 {
				fmt.Fprintf(os.Stderr, "goetcd: first error: %v\n", err)
			}
			continue
		}
		want := rsp.Header.Revision
		wait := time.After(callTimeout)
	seek:
		for {
			select {
			case a, ok := <-arrivals:
				if !ok {
					fail("watch ended")
				}
				if a.revision == want {
					latencies = append(latencies, float64(a.at.Sub(t0).Nanoseconds())/1000)
					break seek
				}
			case <-wait:
				if errs++; errs == 1 {
					fmt.Fprintf(os.Stderr, "goetcd: first error: no event for revision %d within %v\n", want, callTimeout)
				}
				break seek
			}
		}
	}
	return summarize(1, time.Since(start), [][]float64{latencies}, errs)
}

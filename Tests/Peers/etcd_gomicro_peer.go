// etcd_gomicro_peer: a Go peer that reads and writes nodes in etcd the way go-micro's etcd registry
// (v5) lays them out, for the etcd registry interop tests. It talks to etcd through clientv3.
//
// The wire layout, as go-micro's registry/etcd has it: the key is
// /micro/registry/<service>/<node-id>, with '/' in the service name and in the node id turned
// into '-'. The value is encoding/json of a Service holding exactly one node, with no compression
// and no other encoding. The key is put with a lease granted for the TTL (whole seconds) and kept
// alive with one long-lived KeepAlive stream; deregistering deletes the key and leaves the lease
// alone. Reads are serializable prefix ranges, and a value that does not decode is skipped.
//
// Usage (every command takes -endpoints 127.0.0.1:PORT[,…] before its name):
//
//	register -service NAME -node ID -address HOST:PORT -ttl SECONDS
//	         [-version V] [-meta k=v,…] [-service-meta k=v,…] [-service-endpoints JSON]
//	get -service NAME
//	list
//
// register prints "registered KEY lease=HEXID", keeps the lease alive until SIGTERM or SIGINT,
// then deletes the key and prints "deregistered". -meta is the node's metadata (where go-micro
// puts server, transport and protocol), -service-meta the service's, and -service-endpoints a
// JSON array of endpoints ({"name":…,"request":{…},"response":{…},"metadata":{…}}). With -ttl 0
// the key is put without a lease (go-micro does so for TTLs under 1 s). If the keepalive stream
// ends (lease gone, etcd lost), it says so on stderr and registers again (new lease, new put) once
// etcd answers, printing "registered …" again.
//
// get prints the services under that name (one per version, nodes merged) as one JSON array
// line, [] if there are none. list prints the sorted distinct service names found under
// /micro/registry/ as a JSON array.
//
// Every etcd call has a 5 s deadline. Failures print one line on stderr and exit 1.
// Built in GOPATH mode (GO111MODULE=off GOPATH=/usr/share/gocode) against Debian's
// golang-etcd-server-dev (etcd 3.4 clientv3).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/pkg/logutil"
	"go.uber.org/zap"
)

const registryPrefix = "/micro/registry/"

const callTimeout = 5 * time.Second

// JSON shapes of go-micro's registry types (field order kept, so the bytes match too).

type Value struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Values []*Value `json:"values"`
}

type Endpoint struct {
	Request  *Value            `json:"request"`
	Response *Value            `json:"response"`
	Metadata map[string]string `json:"metadata"`
	Name     string            `json:"name"`
}

type Node struct {
	Metadata map[string]string `json:"metadata"`
	Id       string            `json:"id"`
	Address  string            `json:"address"`
}

type Service struct {
	Name      string            `json:"name"`
	Version   string            `json:"version"`
	Metadata  map[string]string `json:"metadata"`
	Endpoints []*Endpoint       `json:"endpoints"`
	Nodes     []*Node           `json:"nodes"`
}

func dashed(s string) string { return strings.Replace(s, "/", "-", -1) }

func serviceKeyPrefix(service string) string {
	return path.Join(registryPrefix, dashed(service)) + "/"
}

func nodeKey(service, node string) string {
	return path.Join(registryPrefix, dashed(service), dashed(node))
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "etcd_gomicro_peer: "+format+"\n", args...)
	os.Exit(1)
}

func parseMeta(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	m := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		i := strings.Index(pair, "=")
		if i <= 0 {
			return nil, fmt.Errorf("metadata entry %q is not k=v", pair)
		}
		m[pair[:i]] = pair[i+1:]
	}
	return m, nil
}

func connect(endpoints string) *clientv3.Client {
	var list []string
	for _, e := range strings.Split(endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			list = append(list, e)
		}
	}
	if len(list) == 0 {
		fail("no etcd endpoints (-endpoints 127.0.0.1:PORT[,…])")
	}
	// clientv3 logs each failed retry as a JSON warning on stderr; keep stderr to our own lines
	quiet := logutil.DefaultZapLoggerConfig
	quiet.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	client, err := clientv3.New(clientv3.Config{Endpoints: list, DialTimeout: callTimeout, LogConfig: &quiet})
	if err != nil {
		fail("connect to %s: %v", endpoints, err)
	}
	return client
}

func withDeadline() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

// decodeService returns nil and an error for values go-micro would skip.
func decodeService(raw []byte) (*Service, error) {
	var s *Service
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	if s == nil {
		return nil, errors.New("value is JSON null")
	}
	return s, nil
}

func rangePrefix(client *clientv3.Client, prefix string) ([]*Service, error) {
	ctx, cancel := withDeadline()
	defer cancel()
	rsp, err := client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	var out []*Service
	for _, kv := range rsp.Kvs {
		s, err := decodeService(kv.Value)
		if err != nil {
			fmt.Fprintf(os.Stderr, "skip %s: %v\n", kv.Key, err)
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

func printJSON(v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		fail("encode output: %v", err)
	}
	fmt.Println(string(b))
}

func get(client *clientv3.Client, service string) {
	found, err := rangePrefix(client, serviceKeyPrefix(service))
	if err != nil {
		fail("get %s: %v", service, err)
	}
	// one Service per version; the first value seen for a version gives its name, metadata and
	// endpoints, and every value adds its nodes
	byVersion := map[string]*Service{}
	var versions []string
	for _, s := range found {
		merged, ok := byVersion[s.Version]
		if !ok {
			merged = &Service{Name: s.Name, Version: s.Version, Metadata: s.Metadata, Endpoints: s.Endpoints}
			byVersion[s.Version] = merged
			versions = append(versions, s.Version)
		}
		merged.Nodes = append(merged.Nodes, s.Nodes...)
	}
	sort.Strings(versions)
	result := make([]*Service, 0, len(versions))
	for _, v := range versions {
		result = append(result, byVersion[v])
	}
	printJSON(result)
}

func list(client *clientv3.Client) {
	found, err := rangePrefix(client, registryPrefix)
	if err != nil {
		fail("list: %v", err)
	}
	seen := map[string]bool{}
	names := []string{}
	for _, s := range found {
		if !seen[s.Name] {
			seen[s.Name] = true
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	printJSON(names)
}

type registration struct {
	client *clientv3.Client
	key    string
	value  string
	ttl    int64
	out    *bufio.Writer
}

// put grants a lease (unless ttl is 0), puts the key with it and starts its keepalive stream.
// The returned channel is nil without a lease.
func (r *registration) put(alive context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	var lease clientv3.LeaseID
	if r.ttl > 0 {
		ctx, cancel := withDeadline()
		granted, err := r.client.Grant(ctx, r.ttl)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("grant %d s lease: %v", r.ttl, err)
		}
		lease = granted.ID
	}
	ctx, cancel := withDeadline()
	var err error
	if lease != 0 {
		_, err = r.client.Put(ctx, r.key, r.value, clientv3.WithLease(lease))
	} else {
		_, err = r.client.Put(ctx, r.key, r.value)
	}
	cancel()
	if err != nil {
		return nil, fmt.Errorf("put %s: %v", r.key, err)
	}
	var acks <-chan *clientv3.LeaseKeepAliveResponse
	if lease != 0 {
		// the stream lives as long as `alive`, not bounded by the per-call deadline
		acks, err = r.client.KeepAlive(alive, lease)
		if err != nil {
			return nil, fmt.Errorf("keepalive lease %x: %v", int64(lease), err)
		}
	}
	fmt.Fprintf(r.out, "registered %s lease=%x\n", r.key, int64(lease))
	r.out.Flush()
	return acks, nil
}

func register(client *clientv3.Client, args []string) {
	fs := flag.NewFlagSet("register", flag.ExitOnError)
	service := fs.String("service", "", "service name")
	node := fs.String("node", "", "node id")
	address := fs.String("address", "", "node address HOST:PORT")
	ttl := fs.Int64("ttl", -1, "lease TTL in seconds (0: no lease)")
	version := fs.String("version", "latest", "service version")
	meta := fs.String("meta", "", "node metadata k=v,…")
	serviceMeta := fs.String("service-meta", "", "service metadata k=v,…")
	endpointsJSON := fs.String("service-endpoints", "", "JSON array of the service's endpoints")
	fs.Parse(args)
	if *service == "" || *node == "" || *address == "" || *ttl < 0 {
		fail("register needs -service, -node, -address and -ttl")
	}
	nodeMeta, err := parseMeta(*meta)
	if err != nil {
		fail("-meta: %v", err)
	}
	svcMeta, err := parseMeta(*serviceMeta)
	if err != nil {
		fail("-service-meta: %v", err)
	}
	var endpoints []*Endpoint
	if *endpointsJSON != "" {
		if err := json.Unmarshal([]byte(*endpointsJSON), &endpoints); err != nil {
			fail("-service-endpoints: %v", err)
		}
	}
	encoded, err := json.Marshal(&Service{
		Name:      *service,
		Version:   *version,
		Metadata:  svcMeta,
		Endpoints: endpoints,
		Nodes:     []*Node{{Metadata: nodeMeta, Id: *node, Address: *address}},
	})
	if err != nil {
		fail("encode: %v", err)
	}
	r := &registration{client: client, key: nodeKey(*service, *node), value: string(encoded), ttl: *ttl,
		out: bufio.NewWriter(os.Stdout)}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	alive, endKeepAlive := context.WithCancel(context.Background())

	acks, err := r.put(alive)
	if err != nil {
		fail("register: %v", err)
	}
	var retry <-chan time.Time
loop:
	for {
		select {
		case <-stop:
			break loop
		case ack, ok := <-acks:
			if ok && ack.TTL > 0 {
				continue
			}
			// lease expired or the stream broke: register anew, as go-micro's next Register would
			fmt.Fprintln(os.Stderr, "keepalive ended; registering again")
			acks = nil
			retry = time.After(0)
		case <-retry:
			retry = nil
			if acks, err = r.put(alive); err != nil {
				fmt.Fprintf(os.Stderr, "register again: %v\n", err)
				retry = time.After(time.Second)
			}
		}
	}
	endKeepAlive()
	ctx, cancel := withDeadline()
	_, err = client.Delete(ctx, r.key)
	cancel()
	if err != nil {
		fail("deregister %s: %v", r.key, err)
	}
	fmt.Fprintln(r.out, "deregistered")
	r.out.Flush()
}

func main() {
	endpoints := flag.String("endpoints", "", "etcd endpoints HOST:PORT[,…]")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: etcd_gomicro_peer -endpoints HOST:PORT[,…] register|get|list [flags]")
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}
	command, rest := flag.Arg(0), flag.Args()[1:]
	switch command {
	case "register":
		client := connect(*endpoints)
		defer client.Close()
		register(client, rest)
	case "get":
		fs := flag.NewFlagSet("get", flag.ExitOnError)
		service := fs.String("service", "", "service name")
		fs.Parse(rest)
		if *service == "" {
			fail("get needs -service")
		}
		client := connect(*endpoints)
		defer client.Close()
		get(client, *service)
	case "list":
		client := connect(*endpoints)
		defer client.Close()
		list(client)
	default:
		flag.Usage()
		os.Exit(2)
	}
}

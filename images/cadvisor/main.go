// Command cadvisor serves cAdvisor's per-container metrics (CPU, memory, network, disk) of the
// Docker engine's containers to Prometheus on /metrics. It is built from cAdvisor's own library
// (manager, Docker plugin and Prometheus collectors) and takes the official image's flags
// (-port, -listen_ip, -docker_only, -housekeeping_interval, -store_container_labels,
// -whitelisted_container_labels, -containerd ...), so the monitoring stack runs it or the
// official image alike.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/cadvisor/cache/memory"
	"github.com/google/cadvisor/container"
	_ "github.com/google/cadvisor/container/docker/install"
	v2 "github.com/google/cadvisor/info/v2"
	"github.com/google/cadvisor/manager"
	"github.com/google/cadvisor/metrics"
	"github.com/google/cadvisor/utils/sysfs"
	"github.com/google/cadvisor/version"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

var (
	listenIP     = flag.String("listen_ip", "", "IP to listen on (all when empty)")
	port         = flag.Int("port", 8080, "port to listen on")
	endpoint     = flag.String("prometheus_endpoint", "/metrics", "path of the Prometheus metrics")
	storeLabels  = flag.Bool("store_container_labels", true, "turn every container label into a metric label")
	whitelisted  = flag.String("whitelisted_container_labels", "", "comma-separated container labels made metric labels when -store_container_labels=false")
	storeMaxAge  = flag.Duration("storage_duration", 2*time.Minute, "how long stats are kept in memory")
	printVersion = flag.Bool("version", false, "print the version and exit")
)

// What is measured: CPU, memory, network, disk I/O and filesystem usage per container.
var included = container.MetricSet{
	container.CpuUsageMetrics:     struct{}{},
	container.MemoryUsageMetrics:  struct{}{},
	container.NetworkUsageMetrics: struct{}{},
	container.DiskIOMetrics:       struct{}{},
	container.DiskUsageMetrics:    struct{}{},
}

func main() {
	klog.InitFlags(nil)
	flag.Parse()
	if *printVersion {
		fmt.Printf("cadvisor %s\n", version.Info["version"])
		return
	}
	cache := memory.New(*storeMaxAge, nil)
	resources, err := manager.New(cache, sysfs.NewRealSysFs(), manager.HousekeepingConfigFlags,
		included, http.DefaultClient, []string{""}, []string{""}, "", 0)
	if err != nil {
		klog.Fatalf("cadvisor: %v", err)
	}
	if err := resources.Start(); err != nil {
		klog.Fatalf("cadvisor: %v", err)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		_ = resources.Stop()
		os.Exit(0)
	}()

	labels := metrics.DefaultContainerLabels
	if !*storeLabels {
		labels = metrics.BaseContainerLabels(strings.Split(*whitelisted, ","))
	}
	registry := prometheus.NewRegistry()
	options := v2.RequestOptions{IdType: v2.TypeName, Count: 1, Recursive: true}
	registry.MustRegister(
		metrics.NewPrometheusCollector(resources, labels, included, clock.RealClock{}, options),
		metrics.NewPrometheusMachineCollector(resources, included),
	)
	mux := http.NewServeMux()
	mux.Handle(*endpoint, promhttp.HandlerFor(registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	address := net.JoinHostPort(*listenIP, strconv.Itoa(*port))
	klog.Infof("cadvisor %s serving %s on %s", version.Info["version"], *endpoint, address)
	klog.Fatal(http.ListenAndServe(address, mux))
}

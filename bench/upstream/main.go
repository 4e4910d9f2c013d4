// A fixed small HTTP/1.1 answer on every path, for bench/gateway_nginx.py: the upstream that nginx and the fx
// gateway both proxy to, so the two proxies are compared on the same work. Standard library only.
package main

import (
	"flag"
	"log"
	"net/http"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port to serve on")
	flag.Parse()
	body := []byte("ok")
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	log.Fatal(http.ListenAndServe(*listen, handler))
}

package calls

import (
	"net/http"
	"strings"
	"time"
)

// StorageMiddleware records each Cloud Storage JSON or XML API request
// that next serves as one call: its method names the HTTP method and what it
// acts on (GET object, GET media, POST upload, PUT upload, GET list,
// DELETE object), its key the bucket/object when the URL names one.
func (l *Log) StorageMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		what, key := storageTarget(r)
		c := Call{Service: Storage, Method: r.Method + " " + what, Start: start, End: time.Now(), Peer: r.RemoteAddr, Failed: sw.status >= 400}
		if key != "" {
			c.Keys = []string{key}
		}
		l.Record(c)
	})
}

// storageTarget classifies a Cloud Storage request by its path.
func storageTarget(r *http.Request) (what, key string) {
	p := r.URL.Path
	upload := strings.HasPrefix(p, "/upload/")
	p = strings.TrimPrefix(strings.TrimPrefix(p, "/upload"), "/storage/v1")
	if strings.HasPrefix(p, "/download/storage/v1") {
		p, upload = strings.TrimPrefix(p, "/download/storage/v1"), false
		return "media", objectKey(p)
	}
	switch {
	case upload:
		key = objectKey(p)
		if name := r.URL.Query().Get("name"); name != "" && key != "" {
			key += "/" + name
		}
		return "upload", key
	case strings.HasPrefix(p, "/b/"):
		key = objectKey(p)
		if !strings.Contains(strings.TrimPrefix(p, "/b/"), "/o/") {
			return "list", key
		}
		if r.URL.Query().Get("alt") == "media" {
			return "media", key
		}
		return "object", key
	}
	// The XML API: /BUCKET/OBJECT.
	return "xml", strings.TrimPrefix(p, "/")
}

// objectKey turns /b/BUCKET/o/OBJECT (or /b/BUCKET/o) into BUCKET/OBJECT
// (or BUCKET).
func objectKey(p string) string {
	rest, ok := strings.CutPrefix(p, "/b/")
	if !ok {
		return ""
	}
	bucket, object, _ := strings.Cut(rest, "/o")
	object = strings.TrimPrefix(object, "/")
	if object == "" {
		return bucket
	}
	return bucket + "/" + object
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

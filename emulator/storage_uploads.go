package emulator

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/pkg/xattr"
)

// diskUploads serves the JSON API's resumable uploads
// (/upload/storage/v1/b/BUCKET/o?uploadType=resumable) of a fake-gcs-server
// that keeps its objects on disk, writing each chunk to a file as it
// arrives, and hands every other request to fake-gcs-server. fake-gcs-server
// itself holds a resumable upload in memory, appending every chunk and
// checksumming all of it again each time, and its disk backend copies a
// whole object into memory before writing it: a 256 MiB object took 1.8 GB
// of the local cloud's memory. Small objects arrive by multipart upload,
// which it still serves.
//
// What it reproduces of Google's service: an upload session starts with a
// POST that names the object (query or JSON body) and answers with its URL
// in Location; chunks are PUT to that URL with Content-Range, each but the
// last answered 308 with the Range received so far (200 with
// X-Http-Status-Code-Override: 308 for a client that sends
// X-Guploader-No-308, as the Go client does); the last one, whose range
// reaches the total, answers 200 with the object resource. ifGenerationMatch
// is checked when the object is committed (412 when it fails, as Google's
// answers at finalization). The object appears whole or not at all, with a
// new generation and its MD5 and CRC32C.
//
// The object lands where fake-gcs-server's disk backend keeps it
// (ROOT/BUCKET/NAME, its attributes as JSON in the extended attribute
// user.metadata, or in NAME.metadata where the file system has no extended
// attributes, chosen as the backend chooses), so that fake-gcs-server reads,
// lists and deletes it as its own.
type diskUploads struct {
	root   string // fake-gcs-server's StorageRoot
	spool  string // where uploads in progress are written, outside root
	xattr  bool   // attributes in user.metadata, else in NAME.metadata
	server *fakestorage.Server
	next   http.Handler

	mu      sync.Mutex
	uploads map[string]*diskUpload
}

// diskUpload is one upload session in progress.
type diskUpload struct {
	mu              sync.Mutex
	bucket, name    string
	contentType     string
	contentEncoding string
	metadata        map[string]string
	// ifGenerationMatch, when set, is the generation the object must have
	// (0: it must not exist) when the upload commits.
	ifGenerationMatch *int64
	file              *os.File
	size              int64
	md5               hash.Hash
	crc               hash.Hash32
}

const uploadPathPrefix = "/upload/storage/v1/b/"

func newDiskUploads(root string, server *fakestorage.Server) (*diskUploads, error) {
	root = filepath.Clean(root)
	spool := root + ".uploads"
	// Upload sessions do not outlive the suite: what an earlier one left
	// unfinished goes.
	if err := os.RemoveAll(spool); err != nil {
		return nil, fmt.Errorf("clear upload spool %s: %w", spool, err)
	}
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, fmt.Errorf("create upload spool %s: %w", spool, err)
	}
	// The backend's own test: extended attributes when reading one of the
	// root works or finds none.
	_, err := xattr.Get(root, "user.metadata")
	var xerr *xattr.Error
	useXattr := err == nil || (errors.As(err, &xerr) && errors.Is(xerr.Err, xattr.ENOATTR))
	return &diskUploads{root: root, spool: spool, xattr: useXattr, server: server, uploads: map[string]*diskUpload{}}, nil
}

func (d *diskUploads) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bucket, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, uploadPathPrefix), "/")
	if !strings.HasPrefix(r.URL.Path, uploadPathPrefix) || !ok || rest != "o" || q.Get("uploadType") != "resumable" {
		d.next.ServeHTTP(w, r)
		return
	}
	if id := q.Get("upload_id"); id != "" {
		d.mu.Lock()
		u := d.uploads[id]
		d.mu.Unlock()
		if u == nil {
			d.next.ServeHTTP(w, r) // not ours
			return
		}
		d.chunk(w, r, id, u)
		return
	}
	if r.Method != http.MethodPost {
		d.next.ServeHTTP(w, r)
		return
	}
	d.start(w, r, bucket)
}

// start opens an upload session.
func (d *diskUploads) start(w http.ResponseWriter, r *http.Request, bucket string) {
	if _, err := os.Stat(filepath.Join(d.root, url.PathEscape(bucket))); err != nil {
		storageError(w, http.StatusNotFound, "bucket "+bucket+" not found")
		return
	}
	var meta struct {
		Name            string            `json:"name"`
		ContentType     string            `json:"contentType"`
		ContentEncoding string            `json:"contentEncoding"`
		Metadata        map[string]string `json:"metadata"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		storageError(w, http.StatusBadRequest, "upload metadata: "+err.Error())
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &meta); err != nil {
			storageError(w, http.StatusBadRequest, "upload metadata: "+err.Error())
			return
		}
	}
	q := r.URL.Query()
	u := &diskUpload{bucket: bucket, name: q.Get("name"), contentType: meta.ContentType, contentEncoding: meta.ContentEncoding,
		metadata: meta.Metadata, md5: md5.New(), crc: crc32.New(crc32.MakeTable(crc32.Castagnoli))}
	if u.name == "" {
		u.name = meta.Name
	}
	if v := q.Get("contentEncoding"); v != "" {
		u.contentEncoding = v
	}
	if !d.onDisk(u.name) {
		// fake-gcs-server answers as it does, in memory.
		r.Body = io.NopCloser(bytes.NewReader(body))
		d.next.ServeHTTP(w, r)
		return
	}
	if v := q.Get("ifGenerationMatch"); v != "" {
		g, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			storageError(w, http.StatusBadRequest, "ifGenerationMatch "+v+" is not a number")
			return
		}
		u.ifGenerationMatch = &g
	}
	f, err := os.CreateTemp(d.spool, "upload-*")
	if err != nil {
		storageError(w, http.StatusInternalServerError, err.Error())
		return
	}
	u.file = f
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	d.mu.Lock()
	d.uploads[id] = u
	d.mu.Unlock()
	location := fmt.Sprintf("http://%s%s%s/o?uploadType=resumable&name=%s&upload_id=%s", r.Host, uploadPathPrefix, bucket, url.QueryEscape(u.name), id)
	w.Header().Set("Location", location)
	if r.Header.Get("X-Goog-Upload-Command") == "start" {
		w.Header().Set("X-Goog-Upload-URL", location)
		w.Header().Set("X-Goog-Upload-Status", "active")
	}
	w.WriteHeader(http.StatusOK)
}

// chunk appends a chunk to the upload, and commits the object when the
// chunk ends it.
func (d *diskUploads) chunk(w http.ResponseWriter, r *http.Request, id string, u *diskUpload) {
	u.mu.Lock()
	defer u.mu.Unlock()
	first, last, total, err := parseUploadRange(r.Header.Get("Content-Range"))
	if err != nil {
		storageError(w, http.StatusBadRequest, err.Error())
		return
	}
	if first >= 0 {
		if first != u.size {
			storageError(w, http.StatusBadRequest, fmt.Sprintf("the chunk starts at byte %d; the upload has %d", first, u.size))
			return
		}
		n, err := io.Copy(io.MultiWriter(u.file, u.md5, u.crc), r.Body)
		u.size += n
		if err != nil || u.size != last+1 {
			// The bytes written are gone with the session: the client
			// starts over.
			d.abort(id, u)
			storageError(w, http.StatusBadRequest, fmt.Sprintf("the chunk of bytes %d-%d ended after %d bytes: %v", first, last, n, err))
			return
		}
	}
	if total < 0 || u.size < total {
		w.Header().Set("Range", fmt.Sprintf("bytes=0-%d", u.size-1))
		if _, no308 := r.Header["X-Guploader-No-308"]; no308 {
			w.Header().Set("X-Http-Status-Code-Override", "308")
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusPermanentRedirect)
		return
	}
	resource, status, err := d.commit(u)
	d.abort(id, u)
	if err != nil {
		storageError(w, status, err.Error())
		return
	}
	if r.Header.Get("X-Goog-Upload-Command") == "upload, finalize" {
		w.Header().Set("X-Goog-Upload-Status", "final")
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(resource)
}

// commit moves the upload's file into place with its attributes, and
// returns the object resource.
func (d *diskUploads) commit(u *diskUpload) (map[string]any, int, error) {
	var current int64
	if obj, err := d.server.GetObjectStreaming(u.bucket, u.name); err == nil {
		current = obj.Generation
		obj.Close()
	}
	if m := u.ifGenerationMatch; m != nil && *m != current {
		return nil, http.StatusPreconditionFailed, errors.New("Precondition Failed")
	}
	now := time.Now().UTC()
	generation := max(now.UnixNano()/1000, current+1)
	crc := make([]byte, 4)
	binary.BigEndian.PutUint32(crc, u.crc.Sum32())
	md5sum := base64.StdEncoding.EncodeToString(u.md5.Sum(nil))
	crc32c := base64.StdEncoding.EncodeToString(crc)
	contentType := u.contentType
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	stamp := now.Format("2006-01-02T15:04:05.999999Z07:00")
	// The disk backend's ObjectAttrs, as it encodes them.
	attrs, err := json.Marshal(map[string]any{
		"StorageClass": "STANDARD", "ContentType": contentType, "ContentEncoding": u.contentEncoding,
		"Crc32c": crc32c, "Md5Hash": md5sum, "Etag": md5sum, "Metadata": u.metadata,
		"Created": stamp, "Updated": stamp, "Generation": generation,
	})
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	path := filepath.Join(d.root, url.PathEscape(u.bucket), u.name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, http.StatusInternalServerError, err
	}
	if d.xattr {
		if err := xattr.FSet(u.file, "user.metadata", attrs); err != nil {
			return nil, http.StatusInternalServerError, fmt.Errorf("keep the attributes of %s: %w", u.name, err)
		}
	} else if err := d.writeFile(path+".metadata", attrs); err != nil {
		return nil, http.StatusInternalServerError, err
	}
	if err := u.file.Sync(); err != nil {
		return nil, http.StatusInternalServerError, err
	}
	if err := os.Rename(u.file.Name(), path); err != nil {
		return nil, http.StatusInternalServerError, fmt.Errorf("put %s in place: %w", u.name, err)
	}
	return map[string]any{
		"kind": "storage#object", "id": fmt.Sprintf("%s/%s/%d", u.bucket, u.name, generation),
		"bucket": u.bucket, "name": u.name, "size": strconv.FormatInt(u.size, 10),
		"contentType": contentType, "contentEncoding": u.contentEncoding, "metadata": u.metadata,
		"crc32c": crc32c, "md5Hash": md5sum, "etag": md5sum, "storageClass": "STANDARD",
		"generation": strconv.FormatInt(generation, 10), "metageneration": "1",
		"timeCreated": stamp, "updated": stamp,
	}, http.StatusOK, nil
}

// abort forgets an upload and removes its file (gone already once
// committed).
func (d *diskUploads) abort(id string, u *diskUpload) {
	d.mu.Lock()
	delete(d.uploads, id)
	d.mu.Unlock()
	u.file.Close()
	os.Remove(u.file.Name())
}

// parseUploadRange reads a chunk's Content-Range: "bytes FIRST-LAST/TOTAL",
// with TOTAL "*" while unknown, or "bytes */TOTAL" for no bytes. first is
// -1 when the chunk carries none, total -1 when unknown.
func parseUploadRange(h string) (first, last, total int64, err error) {
	rng, tot, ok := strings.Cut(strings.TrimPrefix(h, "bytes "), "/")
	if !ok || !strings.HasPrefix(h, "bytes ") {
		return 0, 0, 0, fmt.Errorf("Content-Range %q is not bytes FIRST-LAST/TOTAL", h)
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("Content-Range %q: bad total", h)
		}
	}
	if rng == "*" {
		return -1, -1, total, nil
	}
	a, b, ok := strings.Cut(rng, "-")
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || last < first {
		return 0, 0, 0, fmt.Errorf("Content-Range %q: bad range", h)
	}
	return first, last, total, nil
}

// onDisk reports whether name can be a file under a bucket's directory,
// without leaving it or looking like a metadata file of the backend.
func (d *diskUploads) onDisk(name string) bool {
	if name == "" || strings.HasSuffix(name, "/") || (!d.xattr && strings.HasSuffix(name, ".metadata")) {
		return false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// writeFile writes data to path whole or not at all, through a file of
// the spool: a bucket's directory never shows a partial file.
func (d *diskUploads) writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(d.spool, "metadata-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// storageError answers as the JSON API does.
func storageError(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": status, "message": message}})
}

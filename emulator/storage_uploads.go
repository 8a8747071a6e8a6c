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
	"io/fs"
	"mime"
	"mime/multipart"
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

// diskObjects writes the objects of a fake-gcs-server that keeps them on
// disk: it serves every upload of the JSON API (resumable, multipart and
// media, under /upload/storage/v1/b/BUCKET/o) and object deletes, and hands
// every other request (reads, metadata, listing, buckets) to
// fake-gcs-server. fake-gcs-server itself holds every upload in memory
// (a resumable one appended to and checksummed whole again for each chunk)
// and its disk backend copies a whole object into memory and fsyncs it
// under one lock for the whole server before writing: a 256 MiB object
// took 1.8 GB of the local cloud's memory, and 200,000 small objects were
// written one at a time. Here an upload's bytes go to a file as they
// arrive, and only the commit (a rename) is serialised.
//
// What it reproduces of Google's service:
//   - A resumable upload starts with a POST that names the object (query or
//     JSON body) and answers with its URL in Location; chunks are PUT to
//     that URL with Content-Range, each but the last answered 308 with the
//     Range received so far (200 with X-Http-Status-Code-Override: 308 for
//     a client that sends X-Guploader-No-308, as the Go client does); the
//     last one, whose range reaches the total, answers 200 with the object
//     resource.
//   - A multipart upload (multipart/related: the object's JSON resource,
//     then its bytes) and a media upload (the bytes, named by ?name=)
//     answer 200 with the object resource. A multipart upload's object
//     takes the contentType of its resource, else its bytes' Content-Type.
//     An md5Hash or crc32c the resource declares must match the bytes
//     (400 otherwise, and nothing is stored).
//   - ifGenerationMatch (0: the object must not exist) and
//     ifGenerationNotMatch are checked when the object is committed, 412
//     when they fail; a delete checks them too, and a delete of a missing
//     object, or of a generation that is not the live one, answers 404.
//   - The object appears whole or not at all, with a new generation
//     (greater than the one it replaces) and its MD5 and CRC32C.
//
// It keeps no older generations (fake-gcs-server's disk backend keeps
// none): a read at a generation that was replaced answers 404, as a read
// of a non-current generation does on a bucket without versioning. Names
// are paths of a file tree, as in that backend, so an object cannot be
// named as another's parent (a beside a/b; Google allows it): such an
// upload answers 500, and a name that cannot be a file there (empty
// segments, . or ..) is refused (400) or, for a resumable upload, left to
// fake-gcs-server. sandrun's own names are never either.
//
// The object lands where fake-gcs-server's disk backend keeps it
// (ROOT/BUCKET/NAME, its attributes as JSON in the extended attribute
// user.metadata, or in NAME.metadata where the file system has no extended
// attributes, chosen as the backend chooses), so that fake-gcs-server reads
// and lists it as its own. Files are not fsynced: the local cloud keeps
// what it wrote across a crash or kill of its own process (the kernel
// holds the pages), not across a crash of the machine.
type diskObjects struct {
	root   string // fake-gcs-server's StorageRoot
	spool  string // where uploads in progress are written, outside root
	xattr  bool   // attributes in user.metadata, else in NAME.metadata
	server *fakestorage.Server
	next   http.Handler

	// commit serialises the check of an object's generation with the
	// rename or remove that follows it, for every object: renames are
	// quick, and one lock keeps preconditions exact.
	commit sync.Mutex

	mu      sync.Mutex
	uploads map[string]*diskUpload
}

// pendingObject is an object being written: what its upload said about it.
type pendingObject struct {
	bucket, name       string
	contentType        string
	contentEncoding    string
	contentDisposition string
	contentLanguage    string
	cacheControl       string
	metadata           map[string]string
	conditions         conditions
	// declaredMD5 and declaredCRC32C are what the upload said the bytes
	// hash to (base64), when it said.
	declaredMD5, declaredCRC32C string
}

// conditions are an upload's or a delete's generation preconditions.
type conditions struct {
	// ifGenerationMatch, when set, is the generation the object must have
	// (0: it must not exist); ifGenerationNotMatch one it must not have.
	ifGenerationMatch, ifGenerationNotMatch *int64
}

// objectResource is the JSON an upload's request body gives for the
// object: the fields kept.
type objectResource struct {
	Name               string            `json:"name"`
	ContentType        string            `json:"contentType"`
	ContentEncoding    string            `json:"contentEncoding"`
	ContentDisposition string            `json:"contentDisposition"`
	ContentLanguage    string            `json:"contentLanguage"`
	CacheControl       string            `json:"cacheControl"`
	Metadata           map[string]string `json:"metadata"`
	MD5Hash            string            `json:"md5Hash"`
	CRC32C             string            `json:"crc32c"`
}

// diskUpload is one resumable upload session in progress.
type diskUpload struct {
	mu  sync.Mutex
	obj pendingObject
	*spoolFile
}

// spoolFile is an object's bytes as they arrive, with their hashes.
type spoolFile struct {
	file *os.File
	size int64
	md5  hash.Hash
	crc  hash.Hash32
}

const (
	uploadPathPrefix = "/upload/storage/v1/b/"
	objectPathPrefix = "/storage/v1/b/"
)

func newDiskObjects(root string, server *fakestorage.Server) (*diskObjects, error) {
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
	return &diskObjects{root: root, spool: spool, xattr: useXattr, server: server, uploads: map[string]*diskUpload{}}, nil
}

func (d *diskObjects) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, objectPathPrefix) {
		if bucket, name, ok := d.objectPath(r); ok {
			d.delete(w, r, bucket, name)
			return
		}
	}
	bucket, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, uploadPathPrefix), "/")
	if !strings.HasPrefix(r.URL.Path, uploadPathPrefix) || !ok || rest != "o" {
		d.next.ServeHTTP(w, r)
		return
	}
	switch q.Get("uploadType") {
	case "resumable":
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
		if r.Method == http.MethodPost {
			d.start(w, r, bucket)
			return
		}
	case "multipart":
		if r.Method == http.MethodPost {
			d.multipart(w, r, bucket)
			return
		}
	case "media":
		if r.Method == http.MethodPost {
			d.media(w, r, bucket)
			return
		}
	}
	d.next.ServeHTTP(w, r)
}

// objectPath reads BUCKET and NAME from /storage/v1/b/BUCKET/o/NAME, with
// NAME escaped as the clients escape it, and reports whether the object is
// one of those on disk.
func (d *diskObjects) objectPath(r *http.Request) (bucket, name string, ok bool) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), objectPathPrefix)
	bucket, escaped, ok := strings.Cut(rest, "/o/")
	if !ok || strings.Contains(bucket, "/") {
		return "", "", false
	}
	bucket, err1 := url.PathUnescape(bucket)
	name, err2 := url.PathUnescape(escaped)
	if err1 != nil || err2 != nil || !bucketName(bucket) || !d.onDisk(name) {
		return "", "", false
	}
	return bucket, name, true
}

// start opens a resumable upload session.
func (d *diskObjects) start(w http.ResponseWriter, r *http.Request, bucket string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		storageError(w, http.StatusBadRequest, "upload metadata: "+err.Error())
		return
	}
	obj, status, err := d.pending(r, bucket, bytes.NewReader(body))
	if err != nil {
		storageError(w, status, err.Error())
		return
	}
	if !d.onDisk(obj.name) {
		// fake-gcs-server answers as it does (a name that cannot be a
		// file: a "directory" ending in /).
		r.Body = io.NopCloser(bytes.NewReader(body))
		d.next.ServeHTTP(w, r)
		return
	}
	f, err := d.newSpoolFile()
	if err != nil {
		storageError(w, http.StatusInternalServerError, err.Error())
		return
	}
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	d.mu.Lock()
	d.uploads[id] = &diskUpload{obj: obj, spoolFile: f}
	d.mu.Unlock()
	location := fmt.Sprintf("http://%s%s%s/o?uploadType=resumable&name=%s&upload_id=%s", r.Host, uploadPathPrefix, bucket, url.QueryEscape(obj.name), id)
	w.Header().Set("Location", location)
	if r.Header.Get("X-Goog-Upload-Command") == "start" {
		w.Header().Set("X-Goog-Upload-URL", location)
		w.Header().Set("X-Goog-Upload-Status", "active")
	}
	w.WriteHeader(http.StatusOK)
}

// pending reads what an upload says of its object: the resource in
// resource (JSON, or nothing) and the query's name, contentEncoding and
// preconditions, which win over the resource's. It checks the bucket.
func (d *diskObjects) pending(r *http.Request, bucket string, resource io.Reader) (pendingObject, int, error) {
	if !bucketName(bucket) {
		return pendingObject{}, http.StatusBadRequest, fmt.Errorf("%q is not a bucket name", bucket)
	}
	if _, err := os.Stat(filepath.Join(d.root, url.PathEscape(bucket))); err != nil {
		return pendingObject{}, http.StatusNotFound, fmt.Errorf("bucket %s not found", bucket)
	}
	var res objectResource
	body, err := io.ReadAll(io.LimitReader(resource, 1<<20))
	if err != nil {
		return pendingObject{}, http.StatusBadRequest, fmt.Errorf("object resource: %w", err)
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &res); err != nil {
			return pendingObject{}, http.StatusBadRequest, fmt.Errorf("object resource: %w", err)
		}
	}
	q := r.URL.Query()
	obj := pendingObject{bucket: bucket, name: res.Name, contentType: res.ContentType, contentEncoding: res.ContentEncoding,
		contentDisposition: res.ContentDisposition, contentLanguage: res.ContentLanguage, cacheControl: res.CacheControl,
		metadata: res.Metadata, declaredMD5: res.MD5Hash, declaredCRC32C: res.CRC32C}
	if v := q.Get("name"); v != "" {
		obj.name = v
	}
	if v := q.Get("contentEncoding"); v != "" {
		obj.contentEncoding = v
	}
	if obj.conditions, err = parseConditions(q); err != nil {
		return pendingObject{}, http.StatusBadRequest, err
	}
	return obj, http.StatusOK, nil
}

// parseConditions reads ifGenerationMatch and ifGenerationNotMatch.
func parseConditions(q url.Values) (conditions, error) {
	var c conditions
	for key, dst := range map[string]**int64{"ifGenerationMatch": &c.ifGenerationMatch, "ifGenerationNotMatch": &c.ifGenerationNotMatch} {
		if v := q.Get(key); v != "" {
			g, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return c, fmt.Errorf("%s %q is not a number", key, v)
			}
			*dst = &g
		}
	}
	return c, nil
}

// met reports whether an object of generation current (0: none) meets
// the conditions.
func (c conditions) met(current int64) bool {
	return (c.ifGenerationMatch == nil || *c.ifGenerationMatch == current) &&
		(c.ifGenerationNotMatch == nil || *c.ifGenerationNotMatch != current)
}

// multipart serves a multipart upload: the object's resource, then its
// bytes, streamed to the spool.
func (d *diskObjects) multipart(w http.ResponseWriter, r *http.Request, bucket string) {
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		storageError(w, http.StatusBadRequest, "a multipart upload needs Content-Type multipart/related with a boundary")
		return
	}
	parts := multipart.NewReader(r.Body, params["boundary"])
	resource, err := parts.NextPart()
	if err != nil {
		storageError(w, http.StatusBadRequest, "multipart upload: the object resource: "+err.Error())
		return
	}
	obj, status, err := d.pending(r, bucket, resource)
	if err != nil {
		storageError(w, status, err.Error())
		return
	}
	media, err := parts.NextPart()
	if err != nil {
		storageError(w, http.StatusBadRequest, "multipart upload: the object's bytes: "+err.Error())
		return
	}
	if obj.contentType == "" {
		obj.contentType = media.Header.Get("Content-Type")
	}
	d.whole(w, obj, media)
}

// media serves a media upload: the request's body is the object.
func (d *diskObjects) media(w http.ResponseWriter, r *http.Request, bucket string) {
	obj, status, err := d.pending(r, bucket, http.NoBody)
	if err != nil {
		storageError(w, status, err.Error())
		return
	}
	if obj.name == "" {
		storageError(w, http.StatusBadRequest, "a media upload names its object with ?name=")
		return
	}
	obj.contentType = r.Header.Get("Content-Type")
	d.whole(w, obj, r.Body)
}

// whole stores an object whose bytes arrive in one request and answers
// with its resource.
func (d *diskObjects) whole(w http.ResponseWriter, obj pendingObject, body io.Reader) {
	if !d.onDisk(obj.name) {
		storageError(w, http.StatusBadRequest, fmt.Sprintf("object name %q cannot be stored by the local cloud", obj.name))
		return
	}
	f, err := d.newSpoolFile()
	if err != nil {
		storageError(w, http.StatusInternalServerError, err.Error())
		return
	}
	defer f.discard()
	if err := f.write(body); err != nil {
		storageError(w, http.StatusBadRequest, fmt.Sprintf("the bytes of %s ended after %d bytes: %v", obj.name, f.size, err))
		return
	}
	resource, status, err := d.store(obj, f)
	if err != nil {
		storageError(w, status, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(resource)
}

// chunk appends a chunk to a resumable upload, and commits the object
// when the chunk ends it.
func (d *diskObjects) chunk(w http.ResponseWriter, r *http.Request, id string, u *diskUpload) {
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
		err := u.write(r.Body)
		if err != nil || u.size != last+1 {
			// The bytes written are gone with the session: the client
			// starts over.
			d.forget(id, u)
			storageError(w, http.StatusBadRequest, fmt.Sprintf("the chunk of bytes %d-%d ended at byte %d: %v", first, last, u.size, err))
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
	resource, status, err := d.store(u.obj, u.spoolFile)
	d.forget(id, u)
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

// store commits the spooled bytes as the object, with its attributes, and
// returns the object resource.
func (d *diskObjects) store(obj pendingObject, f *spoolFile) (map[string]any, int, error) {
	crc := make([]byte, 4)
	binary.BigEndian.PutUint32(crc, f.crc.Sum32())
	md5sum := base64.StdEncoding.EncodeToString(f.md5.Sum(nil))
	crc32c := base64.StdEncoding.EncodeToString(crc)
	if (obj.declaredMD5 != "" && obj.declaredMD5 != md5sum) || (obj.declaredCRC32C != "" && obj.declaredCRC32C != crc32c) {
		return nil, http.StatusBadRequest, fmt.Errorf("the bytes of %s hash to MD5 %s and CRC32C %s, not the %s and %s declared", obj.name, md5sum, crc32c, obj.declaredMD5, obj.declaredCRC32C)
	}
	contentType := obj.contentType
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	path := filepath.Join(d.root, url.PathEscape(obj.bucket), obj.name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, http.StatusInternalServerError, err
	}

	d.commit.Lock()
	defer d.commit.Unlock()
	current, err := d.generation(path)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	if !obj.conditions.met(current) {
		return nil, http.StatusPreconditionFailed, errors.New("Precondition Failed")
	}
	now := time.Now().UTC()
	generation := max(now.UnixNano()/1000, current+1)
	stamp := now.Format("2006-01-02T15:04:05.999999Z07:00")
	// The disk backend's ObjectAttrs, as it encodes them.
	attrs, err := json.Marshal(map[string]any{
		"StorageClass": "STANDARD", "ContentType": contentType, "ContentEncoding": obj.contentEncoding,
		"ContentDisposition": obj.contentDisposition, "ContentLanguage": obj.contentLanguage, "CacheControl": obj.cacheControl,
		"Crc32c": crc32c, "Md5Hash": md5sum, "Etag": md5sum, "Metadata": obj.metadata,
		"Created": stamp, "Updated": stamp, "Generation": generation,
	})
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	if d.xattr {
		if err := xattr.FSet(f.file, "user.metadata", attrs); err != nil {
			return nil, http.StatusInternalServerError, fmt.Errorf("keep the attributes of %s: %w", obj.name, err)
		}
	} else if err := d.writeFile(path+".metadata", attrs); err != nil {
		return nil, http.StatusInternalServerError, err
	}
	if err := os.Rename(f.file.Name(), path); err != nil {
		return nil, http.StatusInternalServerError, fmt.Errorf("put %s in place: %w", obj.name, err)
	}
	return map[string]any{
		"kind": "storage#object", "id": fmt.Sprintf("%s/%s/%d", obj.bucket, obj.name, generation),
		"bucket": obj.bucket, "name": obj.name, "size": strconv.FormatInt(f.size, 10),
		"contentType": contentType, "contentEncoding": obj.contentEncoding, "contentDisposition": obj.contentDisposition,
		"contentLanguage": obj.contentLanguage, "cacheControl": obj.cacheControl, "metadata": obj.metadata,
		"crc32c": crc32c, "md5Hash": md5sum, "etag": md5sum, "storageClass": "STANDARD",
		"generation": strconv.FormatInt(generation, 10), "metageneration": "1",
		"timeCreated": stamp, "updated": stamp,
	}, http.StatusOK, nil
}

// delete deletes an object, checking its preconditions and ?generation=
// against the live generation.
func (d *diskObjects) delete(w http.ResponseWriter, r *http.Request, bucket, name string) {
	q := r.URL.Query()
	c, err := parseConditions(q)
	if err != nil {
		storageError(w, http.StatusBadRequest, err.Error())
		return
	}
	var generation int64
	if v := q.Get("generation"); v != "" {
		if generation, err = strconv.ParseInt(v, 10, 64); err != nil {
			storageError(w, http.StatusBadRequest, "generation "+v+" is not a number")
			return
		}
	}
	path := filepath.Join(d.root, url.PathEscape(bucket), name)
	d.commit.Lock()
	defer d.commit.Unlock()
	current, err := d.generation(path)
	switch {
	case err != nil:
		storageError(w, http.StatusInternalServerError, err.Error())
	case current == 0 || (generation != 0 && generation != current):
		storageError(w, http.StatusNotFound, fmt.Sprintf("No such object: %s/%s", bucket, name))
	case !c.met(current):
		storageError(w, http.StatusPreconditionFailed, "Precondition Failed")
	default:
		if err := os.Remove(path); err != nil {
			storageError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if !d.xattr {
			os.Remove(path + ".metadata")
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// generation returns the generation of the object stored at path, 0 when
// there is none.
func (d *diskObjects) generation(path string) (int64, error) {
	var data []byte
	var err error
	if d.xattr {
		data, err = xattr.Get(path, "user.metadata")
	} else {
		data, err = os.ReadFile(path + ".metadata")
	}
	// No file, or a file without attributes (one being put in place
	// gets them before its rename): no object.
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, xattr.ENOATTR) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the attributes of %s: %w", path, err)
	}
	var attrs struct{ Generation int64 }
	if err := json.Unmarshal(data, &attrs); err != nil {
		return 0, fmt.Errorf("read the attributes of %s: %w", path, err)
	}
	return attrs.Generation, nil
}

// newSpoolFile opens a file of the spool for an object's bytes.
func (d *diskObjects) newSpoolFile() (*spoolFile, error) {
	f, err := os.CreateTemp(d.spool, "upload-*")
	if err != nil {
		return nil, fmt.Errorf("spool an upload: %w", err)
	}
	return &spoolFile{file: f, md5: md5.New(), crc: crc32.New(crc32.MakeTable(crc32.Castagnoli))}, nil
}

// write appends what r yields.
func (f *spoolFile) write(r io.Reader) error {
	n, err := io.Copy(io.MultiWriter(f.file, f.md5, f.crc), r)
	f.size += n
	return err
}

// discard closes the file and removes it (gone already once committed).
func (f *spoolFile) discard() {
	f.file.Close()
	os.Remove(f.file.Name())
}

// forget ends a resumable upload session.
func (d *diskObjects) forget(id string, u *diskUpload) {
	d.mu.Lock()
	delete(d.uploads, id)
	d.mu.Unlock()
	u.discard()
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
func (d *diskObjects) onDisk(name string) bool {
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

// bucketName reports whether name can be a bucket's: letters, digits,
// dots, dashes and underscores, beginning and ending with a letter or
// digit (so never . or .., which would lead out of the root).
func bucketName(name string) bool {
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	if name == "" || !alnum(name[0]) || !alnum(name[len(name)-1]) {
		return false
	}
	for i := range len(name) {
		if c := name[i]; !alnum(c) && c != '.' && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// writeFile writes data to path whole or not at all, through a file of
// the spool: a bucket's directory never shows a partial file.
func (d *diskObjects) writeFile(path string, data []byte) error {
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

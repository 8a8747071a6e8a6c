package firestore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/proto"
)

// Persist keeps the server's documents in the file path, so that a local
// cloud restarted on the same directory finds what it held: it loads the
// documents the file holds now (none if it does not exist) as one commit,
// then writes every document that exists, at their latest version, to
// the file every interval while commits happen, and once more at Close.
// Call it once, before serving.
//
// A snapshot is what Google's emulator offers with --export-on-exit and
// --import-data: documents, their fields and their create and update
// times, not their history, open transactions or Listen resume tokens.
// Reads at a read_time before the load fail as any read before the kept
// history does. A process killed without Close loses at most the last
// interval of commits.
func (s *Server) Persist(path string, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read firestore snapshot %s: %w", path, err)
	default:
		var snap pb.ListDocumentsResponse
		if err := proto.Unmarshal(data, &snap); err != nil {
			return fmt.Errorf("decode firestore snapshot %s: %w", path, err)
		}
		s.store.load(snap.Documents)
	}
	s.snapshotPath, s.persisted = path, make(chan struct{})
	go func() {
		defer close(s.persisted)
		s.saveLoop(path, interval)
	}()
	return nil
}

// saveLoop writes the snapshot every interval when there were commits,
// and a last time when the server closes.
func (s *Server) saveLoop(path string, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	saved := s.store.latestVersion()
	for {
		select {
		case <-t.C:
		case <-s.done:
			// Errors here have no one to go to but the next start, which
			// reads the last snapshot that was written whole.
			_ = s.store.save(path)
			return
		}
		if v := s.store.latestVersion(); v != saved {
			if err := s.store.save(path); err == nil {
				saved = v
			}
		}
	}
}

// SaveSnapshot writes the snapshot now (with Persist; else it does
// nothing). Close writes one too, but a gRPC server still serving after
// Close can commit more: call SaveSnapshot once it stopped.
func (s *Server) SaveSnapshot() error {
	if s.snapshotPath == "" {
		return nil
	}
	return s.store.save(s.snapshotPath)
}

// latestVersion is the version of the last commit.
func (s *store) latestVersion() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version
}

// load installs docs as one commit.
func (s *store) load(docs []*pb.Document) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changes := make(map[string]*pb.Document, len(docs))
	for _, d := range docs {
		changes[d.Name] = d
	}
	s.install(changes, s.nextCommitTime())
}

// save writes every document that exists now to path, whole or not at
// all (a new file renamed over the old one). Stored documents are
// immutable, so they are encoded outside the lock.
func (s *store) save(path string) error {
	var snap pb.ListDocumentsResponse
	s.mu.RLock()
	s.scan("", s.version, func(doc *pb.Document, _ int64) { snap.Documents = append(snap.Documents, doc) })
	s.mu.RUnlock()
	data, err := proto.Marshal(&snap)
	if err != nil {
		return fmt.Errorf("encode firestore snapshot: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write firestore snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write firestore snapshot %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write firestore snapshot %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write firestore snapshot %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write firestore snapshot %s: %w", path, err)
	}
	return nil
}

package hostcred

import (
	"context"
	"fmt"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The stored token lives in Firestore at credentials/host (fields token
// and expires, as Token's tags say), which the dispatcher and the reaper
// renew and running hosts read. Only the host account, the dispatcher's
// and the reaper's can read the database; a backend cannot. Terraform's
// IAM and deployed data name this path: it must not move.
const (
	credentialsCollection = "credentials"
	hostTokenDoc          = "host"
)

// FirestoreStore is the Store of a deployment: the token document in its
// Firestore database.
type FirestoreStore struct {
	fs *firestore.Client
}

// NewFirestoreStore returns the Store over fs.
func NewFirestoreStore(fs *firestore.Client) *FirestoreStore { return &FirestoreStore{fs: fs} }

func (s *FirestoreStore) ref() *firestore.DocumentRef {
	return s.fs.Collection(credentialsCollection).Doc(hostTokenDoc)
}

// HostToken returns the stored host token, the zero Token if none.
func (s *FirestoreStore) HostToken(ctx context.Context) (Token, error) {
	snap, err := s.ref().Get(ctx)
	if status.Code(err) == codes.NotFound {
		return Token{}, nil
	}
	if err != nil {
		return Token{}, fmt.Errorf("read the host token: %w", err)
	}
	var t Token
	if err := snap.DataTo(&t); err != nil {
		return Token{}, fmt.Errorf("decode the host token: %w", err)
	}
	return t, nil
}

// OfferHostToken stores t unless the stored token expires later, in a
// transaction, and returns the token stored afterwards: concurrent keepers
// that each minted one agree on the one that lasts longest.
func (s *FirestoreStore) OfferHostToken(ctx context.Context, t Token) (Token, error) {
	ref := s.ref()
	var kept Token
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		if err == nil {
			var stored Token
			if err := snap.DataTo(&stored); err != nil {
				return fmt.Errorf("decode the host token: %w", err)
			}
			if !stored.Expires.Before(t.Expires) {
				kept = stored
				return nil
			}
		}
		kept = t
		return tx.Set(ref, t)
	})
	if err != nil {
		return Token{}, fmt.Errorf("store the host token: %w", err)
	}
	return kept, nil
}

package session

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/firestore"

	"github.com/sandrun/sandrun/internal/hostcred"
)

// credentialsCollection holds credentials/host, the session hosts' current
// access token, which the dispatcher and the reaper renew and running hosts
// read (package hostcred). Only the host account, the dispatcher's and the
// reaper's can read the database; a backend cannot.
const (
	credentialsCollection = "credentials"
	hostTokenDoc          = "host"
)

func (s *Store) hostTokenRef() *firestore.DocumentRef {
	return s.fs.Collection(credentialsCollection).Doc(hostTokenDoc)
}

// HostToken returns the stored host token, the zero Token if none.
func (s *Store) HostToken(ctx context.Context) (hostcred.Token, error) {
	t, err := get[hostcred.Token](ctx, s.hostTokenRef())
	if errors.Is(err, ErrNotFound) {
		return hostcred.Token{}, nil
	}
	if err != nil {
		return hostcred.Token{}, err
	}
	return *t, nil
}

// OfferHostToken stores t unless the stored token expires later, in a
// transaction, and returns the token stored afterwards: concurrent keepers
// that each minted one agree on the one that lasts longest.
func (s *Store) OfferHostToken(ctx context.Context, t hostcred.Token) (hostcred.Token, error) {
	ref := s.hostTokenRef()
	var kept hostcred.Token
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		stored, err := txGet[hostcred.Token](tx, ref)
		if err != nil {
			return err
		}
		if stored != nil && !stored.Expires.Before(t.Expires) {
			kept = *stored
			return nil
		}
		kept = t
		return tx.Set(ref, t)
	})
	if err != nil {
		return hostcred.Token{}, fmt.Errorf("store the host token: %w", err)
	}
	return kept, nil
}

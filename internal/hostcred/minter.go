package hostcred

import (
	"context"
	"errors"
	"fmt"
	"time"

	credentials "cloud.google.com/go/iam/credentials/apiv1"
	"cloud.google.com/go/iam/credentials/apiv1/credentialspb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandrun/sandrun/internal/gcp"
)

// EmulatorHostEnv, when set, is host:port of the local cloud's IAM
// Credentials API, which the IAMMinter then uses instead of Google's.
const EmulatorHostEnv = "IAMCREDENTIALS_EMULATOR_HOST"

// cloudPlatformScope is what the host's clients need: Firestore, Cloud
// Storage and Pub/Sub all accept it; IAM decides what the token may do.
const cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// IAMMinter mints tokens of one service account with IAM Credentials'
// GenerateAccessToken, as its caller (which needs
// iam.serviceAccounts.getAccessToken on that account).
type IAMMinter struct {
	client   *credentials.IamCredentialsClient
	account  string
	lifetime time.Duration
}

// NewIAMMinter connects to the IAM Credentials API to mint tokens of
// account (an email) that last lifetime (0 means DefaultLifetime).
func NewIAMMinter(ctx context.Context, account string, lifetime time.Duration) (*IAMMinter, error) {
	if account == "" {
		return nil, errors.New("mint host tokens: no host service account")
	}
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	client, err := credentials.NewIamCredentialsClient(ctx, gcp.EmulatorOptions(EmulatorHostEnv)...)
	if err != nil {
		return nil, fmt.Errorf("connect to IAM Credentials: %w", err)
	}
	return &IAMMinter{client: client, account: account, lifetime: lifetime}, nil
}

// Mint returns a new token of the account.
func (m *IAMMinter) Mint(ctx context.Context) (Token, error) {
	resp, err := m.client.GenerateAccessToken(ctx, &credentialspb.GenerateAccessTokenRequest{
		Name:     "projects/-/serviceAccounts/" + m.account,
		Scope:    []string{cloudPlatformScope},
		Lifetime: durationpb.New(m.lifetime),
	})
	if err != nil {
		return Token{}, fmt.Errorf("mint a token of %s: %w", m.account, err)
	}
	// Firestore keeps timestamps to the microsecond: a token whose expiry
	// is finer would not equal itself once stored and read back, and the
	// keepers compare the tokens they hold with the stored one. Rounding
	// down only shortens the token's life by less than a microsecond.
	return Token{Value: resp.GetAccessToken(), Expires: resp.GetExpireTime().AsTime().Truncate(time.Microsecond)}, nil
}

// Close releases the connection.
func (m *IAMMinter) Close() error { return m.client.Close() }

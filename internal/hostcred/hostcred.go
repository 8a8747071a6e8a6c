// Package hostcred owns the session hosts' cloud credential.
//
// A session host runs untrusted commands, and anything its container can
// reach, they can: the metadata server hands the token of the job's own
// service account to any process that asks. So that account holds no
// rights, and the host works with another one's, "the host account",
// whose access tokens only the dispatcher and the reaper can mint (IAM
// Credentials' GenerateAccessToken). The path of a token:
//
//   - A Keeper, in the dispatcher and in the reaper, keeps a token with
//     more than RenewBefore left in Firestore (Store), minting a new one
//     when the stored one gets close to its expiry.
//   - Every launch passes the Keeper's current token to the execution in
//     its environment (SANDRUN_HOST_TOKEN, SANDRUN_HOST_TOKEN_EXPIRES).
//   - The host takes it out of its environment (FromEnv) and holds it in
//     a Source, the token source of its clients. When the token gets
//     close to its expiry, the Source reads the stored one, which the
//     keepers have renewed by then, with the token it still has.
//
// The host keeps the token from its commands by being non-dumpable
// (procs.DenyInspection), by giving them an environment of their own
// (system.BaseEnv), and by refusing its own /proc entries to file
// operations. docs/deploy.md says what this does and does not protect.
package hostcred

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// The environment a launch gives a host.
const (
	EnvToken   = "SANDRUN_HOST_TOKEN"
	EnvExpires = "SANDRUN_HOST_TOKEN_EXPIRES"
)

// Defaults.
const (
	// DefaultLifetime is how long a minted token lasts: the API's
	// maximum, unless an organization policy allows more.
	DefaultLifetime = time.Hour
	// DefaultRenewBefore is how much of a token's life must be left for a
	// keeper to hand it out; with less, it mints a new one, and a host
	// starts looking for the new one. It bounds how long the keepers may
	// all be down before hosts lose their credential.
	DefaultRenewBefore = 20 * time.Minute
	// DefaultCheckInterval is how often keepers and hosts look.
	DefaultCheckInterval = time.Minute
)

// Token is an access token of the host account. Its value never appears
// in logs: it formats as its expiry alone.
type Token struct {
	Value   string    `firestore:"token"`
	Expires time.Time `firestore:"expires"`
}

// String hides the value.
func (t Token) String() string {
	if t.Value == "" {
		return "no token"
	}
	return "token expiring " + t.Expires.UTC().Format(time.RFC3339)
}

// LogValue hides the value from slog.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }

// lasts tells whether t has more than d left at now.
func (t Token) lasts(d time.Duration, now time.Time) bool {
	return t.Value != "" && t.Expires.Sub(now) > d
}

// Store is where keepers put the current token and hosts find it.
type Store interface {
	// HostToken returns the stored token, the zero Token if none.
	HostToken(ctx context.Context) (Token, error)
	// OfferHostToken stores t unless the stored token expires later, and
	// returns the one that is stored afterwards.
	OfferHostToken(ctx context.Context, t Token) (Token, error)
}

// FromEnv returns the token a launch passed, if it passed one.
func FromEnv(getenv func(string) string) (Token, bool, error) {
	value := getenv(EnvToken)
	if value == "" {
		return Token{}, false, nil
	}
	expires, err := time.Parse(time.RFC3339, getenv(EnvExpires))
	if err != nil {
		return Token{}, false, fmt.Errorf("%s: %w", EnvExpires, err)
	}
	return Token{Value: value, Expires: expires}, true, nil
}

// Env is the launch environment that passes t.
func Env(t Token) map[string]string {
	return map[string]string{EnvToken: t.Value, EnvExpires: t.Expires.UTC().Format(time.RFC3339Nano)}
}

// Source is a host's token source: the token its launch passed, then the
// renewed ones it reads from the Store. It is safe for concurrent use.
type Source struct {
	renewBefore time.Duration
	now         func() time.Time

	mu  sync.Mutex
	tok Token
}

// NewSource starts from the token the launch passed; renewBefore is the
// keepers' (0 means DefaultRenewBefore).
func NewSource(t Token, renewBefore time.Duration) *Source {
	if renewBefore <= 0 {
		renewBefore = DefaultRenewBefore
	}
	return &Source{renewBefore: renewBefore, now: time.Now, tok: t}
}

// Current returns the token the source holds.
func (s *Source) Current() Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok
}

// Token implements oauth2.TokenSource. An expired token is an error: a
// call made with it would fail anyway, and this one says why.
func (s *Source) Token() (*oauth2.Token, error) {
	t := s.Current()
	if !t.lasts(0, s.now()) {
		return nil, fmt.Errorf("host token expired at %s and no renewed one was found", t.Expires.UTC().Format(time.RFC3339))
	}
	return &oauth2.Token{AccessToken: t.Value, TokenType: "Bearer", Expiry: t.Expires}, nil
}

// Renew takes the stored token if it expires later than the one held. It
// reads the store only once the held token has RenewBefore or less left,
// when the keepers have renewed it or are about to. It reports whether it
// took a new one.
func (s *Source) Renew(ctx context.Context, store Store) (bool, error) {
	held := s.Current()
	if held.lasts(s.renewBefore, s.now()) {
		return false, nil
	}
	stored, err := store.HostToken(ctx)
	if err != nil {
		return false, fmt.Errorf("read the renewed host token: %w", err)
	}
	if stored.Value == "" || stored.Value == held.Value || !stored.Expires.After(held.Expires) {
		return false, nil
	}
	s.mu.Lock()
	s.tok = stored
	s.mu.Unlock()
	return true, nil
}

// Run renews the held token every interval until ctx ends, logging what
// it took and what failed.
func (s *Source) Run(ctx context.Context, store Store, interval time.Duration, logger *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		renewed, err := s.Renew(ctx, store)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Warn("host token not renewed", "event", "host.token_renew_failed", "held", s.Current(), "error", err.Error())
		case renewed:
			logger.Info("host token renewed", "event", "host.token_renewed", "held", s.Current())
		}
	}
}

// Minter mints host tokens.
type Minter interface {
	Mint(ctx context.Context) (Token, error)
}

// Keeper keeps a host token with more than RenewBefore left in the Store
// and hands it to launches. It is safe for concurrent use.
type Keeper struct {
	store       Store
	minter      Minter
	renewBefore time.Duration
	now         func() time.Time

	mu  sync.Mutex // held while renewing, so that one caller mints
	tok Token
}

// NewKeeper returns a keeper; renewBefore 0 means DefaultRenewBefore. It
// must be less than the minted tokens' lifetime.
func NewKeeper(store Store, minter Minter, renewBefore time.Duration) *Keeper {
	if renewBefore <= 0 {
		renewBefore = DefaultRenewBefore
	}
	return &Keeper{store: store, minter: minter, renewBefore: renewBefore, now: time.Now}
}

// Token returns a token with more than RenewBefore left: the one the
// keeper holds, else the stored one, else one it mints and stores.
func (k *Keeper) Token(ctx context.Context) (Token, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.tok.lasts(k.renewBefore, k.now()) {
		return k.tok, nil
	}
	stored, err := k.store.HostToken(ctx)
	if err != nil {
		return Token{}, fmt.Errorf("read the host token: %w", err)
	}
	if stored.lasts(k.renewBefore, k.now()) {
		k.tok = stored
		return stored, nil
	}
	minted, err := k.minter.Mint(ctx)
	if err != nil {
		return Token{}, err
	}
	if !minted.lasts(k.renewBefore, k.now()) {
		return Token{}, fmt.Errorf("minted a host token that expires at %s, within the renewal margin of %s: the lifetime must be longer", minted.Expires.UTC().Format(time.RFC3339), k.renewBefore)
	}
	// Another keeper may have stored a later one meanwhile: the store
	// keeps whichever lasts longer, and that is the one to hand out.
	kept, err := k.store.OfferHostToken(ctx, minted)
	if err != nil {
		// Unstored, it would reach no running host: try again next time.
		return Token{}, err
	}
	k.tok = kept
	return kept, nil
}

// LaunchEnv is the environment every launch adds: the current token. When
// it cannot be renewed now, a launch still gets the one the keeper holds
// while that has more than a quarter of RenewBefore left: the host looks
// for the renewed one from its start, and finds it once minting works
// again.
func (k *Keeper) LaunchEnv(ctx context.Context) (map[string]string, error) {
	t, err := k.Token(ctx)
	if err != nil {
		k.mu.Lock()
		held := k.tok
		k.mu.Unlock()
		if !held.lasts(k.renewBefore/4, k.now()) {
			return nil, fmt.Errorf("host token for the launch: %w", err)
		}
		t = held
	}
	return Env(t), nil
}

// Run keeps the stored token renewed, checking every interval, until ctx
// ends: running hosts read their renewed tokens from the store even when
// nothing is launched.
func (k *Keeper) Run(ctx context.Context, interval time.Duration, logger *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if _, err := k.Token(ctx); err != nil && ctx.Err() == nil {
			logger.Error("host token not renewed", "event", "hostcred.renew_failed", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Config is how the programs mint, renew and use host tokens. The
// dispatcher, the reaper and the executor must agree on it.
type Config struct {
	// Account is the host service account's email. Empty: no tokens are
	// minted, and hosts use their job's own credentials.
	Account string
	// Lifetime of a minted token.
	Lifetime time.Duration
	// RenewBefore is how much of a token's life is left when keepers
	// replace it and hosts start looking for the replacement.
	RenewBefore time.Duration
	// CheckInterval is how often keepers and hosts look.
	CheckInterval time.Duration
}

// WithDefaults fills the durations left zero with the defaults (those of
// the settings table, internal/system).
func (c Config) WithDefaults() Config {
	if c.Lifetime <= 0 {
		c.Lifetime = DefaultLifetime
	}
	if c.RenewBefore <= 0 {
		c.RenewBefore = DefaultRenewBefore
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = DefaultCheckInterval
	}
	return c
}

// Validate tells whether the durations can work together.
func (c Config) Validate() error {
	switch {
	case c.Lifetime <= 0 || c.RenewBefore <= 0 || c.CheckInterval <= 0:
		return fmt.Errorf("host token lifetime %s, renew-before %s and check interval %s must all be positive", c.Lifetime, c.RenewBefore, c.CheckInterval)
	case c.RenewBefore+c.CheckInterval >= c.Lifetime:
		return fmt.Errorf("host token renew-before %s plus check interval %s must be less than its lifetime %s", c.RenewBefore, c.CheckInterval, c.Lifetime)
	}
	return nil
}

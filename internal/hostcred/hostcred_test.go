package hostcred_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/emulator/official"
	"github.com/sandrun/sandrun/internal/hostcred"
)

const account = "sandrun-executor@sandrun-local.iam.gserviceaccount.com"

var discard = slog.New(slog.DiscardHandler)

// world is the local cloud with a store per caller, as each program has a
// Firestore client of its own.
type world struct {
	t     *testing.T
	suite *emulator.Suite
}

func newWorld(t *testing.T) *world {
	if onOfficial {
		return &world{t: t, suite: emulatortest.StartOnOfficial(t, emulator.Config{})}
	}
	return &world{t: t, suite: emulatortest.Start(t, emulator.Config{})}
}

// onOfficial makes newWorld use Google's Firestore emulator (set by
// TestOnOfficialFirestore while it runs).
var onOfficial bool

func TestMain(m *testing.M) {
	code := m.Run()
	official.Stop()
	os.Exit(code)
}

// TestOnOfficialFirestore runs the tests that keep tokens in Firestore again
// on Google's Firestore emulator, where they once failed: it keeps
// timestamps to the microsecond, and a token minted with a finer expiry no
// longer equalled itself once stored.
func TestOnOfficialFirestore(t *testing.T) {
	official.Firestore(t) // skips when there is none
	onOfficial = true
	defer func() { onOfficial = false }()
	t.Run("KeepersShareOneMintedToken", TestKeepersShareOneMintedToken)
	t.Run("KeeperRenewsBeforeExpiry", TestKeeperRenewsBeforeExpiry)
	t.Run("SourceTakesTheRenewedToken", TestSourceTakesTheRenewedToken)
}

func (w *world) store() *hostcred.FirestoreStore {
	w.t.Helper()
	fs, err := firestore.NewClient(context.Background(), w.suite.Project)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { fs.Close() })
	return hostcred.NewFirestoreStore(fs)
}

func (w *world) minter(lifetime time.Duration) *hostcred.IAMMinter {
	w.t.Helper()
	m, err := hostcred.NewIAMMinter(context.Background(), account, lifetime)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { m.Close() })
	return m
}

// minted asserts that tok came from the IAM Credentials API, for the host
// account, with the expiry the API gave, to the microsecond that Firestore
// keeps.
func (w *world) minted(tok hostcred.Token) {
	w.t.Helper()
	m, ok := w.suite.IAM.Minted(tok.Value)
	if !ok || m.Account != account || !m.Expires.Truncate(time.Microsecond).Equal(tok.Expires) {
		w.t.Fatalf("token %s: minted %v (%+v), want minted for %s", tok, ok, m, account)
	}
}

func TestKeepersShareOneMintedToken(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	first := hostcred.NewKeeper(w.store(), w.minter(time.Hour), 20*time.Minute)
	tok, err := first.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.minted(tok)
	if left := time.Until(tok.Expires); left < 59*time.Minute || left > time.Hour {
		t.Fatalf("token lasts %s, want an hour", left)
	}
	if again, _ := first.Token(ctx); again != tok {
		t.Fatalf("second Token = %s, want the same token", again)
	}
	// Another program's keeper finds the stored token instead of minting.
	second := hostcred.NewKeeper(w.store(), w.minter(time.Hour), 20*time.Minute)
	if got, err := second.Token(ctx); err != nil || got != tok {
		t.Fatalf("another keeper's Token = %s, %v; want the stored one", got, err)
	}
	env, err := second.LaunchEnv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	back, ok, err := hostcred.FromEnv(func(k string) string { return env[k] })
	if !ok || err != nil || back.Value != tok.Value || !back.Expires.Equal(tok.Expires) {
		t.Fatalf("FromEnv(LaunchEnv) = %s %v %v, want %s", back, ok, err, tok)
	}
}

// A keeper replaces a token that gets within RenewBefore of its expiry,
// and the store never goes back to a token that expires sooner.
func TestKeeperRenewsBeforeExpiry(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	st := w.store()
	// A lifetime shorter than the margin could never be handed out.
	if _, err := hostcred.NewKeeper(st, w.minter(time.Second), 2*time.Second).Token(ctx); err == nil || !strings.Contains(err.Error(), "lifetime must be longer") {
		t.Fatalf("keeper with lifetime under its margin: %v", err)
	}
	k := hostcred.NewKeeper(st, w.minter(4*time.Second), 2*time.Second)
	old, err := k.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(old.Expires.Add(-2*time.Second)) + 100*time.Millisecond)
	renewed, err := k.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.minted(renewed)
	if renewed.Value == old.Value || !renewed.Expires.After(old.Expires) {
		t.Fatalf("after the margin Token = %s, want a new token after %s", renewed, old)
	}
	if stored, _ := st.HostToken(ctx); stored != renewed {
		t.Fatalf("stored %s, want %s", stored, renewed)
	}
	if kept, err := st.OfferHostToken(ctx, old); err != nil || kept != renewed {
		t.Fatalf("offering an older token kept %s, %v; want %s", kept, err, renewed)
	}
}

// countingStore counts the host's reads of the stored token.
type countingStore struct {
	hostcred.Store
	mu    sync.Mutex
	reads int
}

func (c *countingStore) HostToken(ctx context.Context) (hostcred.Token, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Store.HostToken(ctx)
}

func TestSourceTakesTheRenewedToken(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	st := &countingStore{Store: w.store()}
	launch, err := hostcred.NewKeeper(st, w.minter(4*time.Second), 2*time.Second).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src := hostcred.NewSource(launch, 2*time.Second)
	// With more than the margin left, the host does not even look.
	if renewed, err := src.Renew(ctx, st); renewed || err != nil || st.reads != 1 {
		t.Fatalf("early Renew = %v, %v after %d reads; want no read", renewed, err, st.reads)
	}
	time.Sleep(time.Until(launch.Expires.Add(-2*time.Second)) + 100*time.Millisecond)
	// Within the margin it looks, and keeps its token until a keeper has
	// stored a later one: the stored token is still its own.
	if renewed, err := src.Renew(ctx, st); renewed || err != nil || src.Current() != launch {
		t.Fatalf("Renew with nothing newer = %v, %v, holding %s", renewed, err, src.Current())
	}
	// Nor is its own token renewed when the stored copy's expiry is finer.
	coarse := hostcred.NewSource(hostcred.Token{Value: launch.Value, Expires: launch.Expires.Truncate(time.Second)}, 2*time.Second)
	if renewed, err := coarse.Renew(ctx, st); renewed || err != nil {
		t.Fatalf("Renew to the token it holds = %v, %v", renewed, err)
	}
	next, err := hostcred.NewKeeper(w.store(), w.minter(time.Hour), 2*time.Second).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if renewed, err := src.Renew(ctx, st); !renewed || err != nil || src.Current() != next {
		t.Fatalf("Renew = %v, %v, holding %s; want %s", renewed, err, src.Current(), next)
	}
	if tok, err := src.Token(); err != nil || tok.AccessToken != next.Value {
		t.Fatalf("Token() = %v, %v", tok, err)
	}
}

func TestExpiredSourceSaysSo(t *testing.T) {
	src := hostcred.NewSource(hostcred.Token{Value: "ya29.old", Expires: time.Now().Add(-time.Minute)}, 0)
	if _, err := src.Token(); err == nil || !strings.Contains(err.Error(), "no renewed one") {
		t.Fatalf("Token() of an expired source: %v", err)
	}
}

// The official clients authenticate with whatever the Source holds now:
// a Cloud Storage client, pointed at a server that records the bearer
// tokens it is sent, moves to the renewed token without being rebuilt.
func TestOfficialClientUsesTheRenewedToken(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"name":"b","metageneration":"1"}`))
	}))
	defer srv.Close()
	// The first token is within the clients' own early-expiry margin, so
	// they ask the Source again on each call.
	first := hostcred.Token{Value: "ya29.first", Expires: time.Now().Add(15 * time.Second)}
	src := hostcred.NewSource(first, time.Minute)
	client, err := storage.NewClient(context.Background(), option.WithEndpoint(srv.URL+"/storage/v1/"), option.WithTokenSource(src))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	attrs := func() {
		if _, err := client.Bucket("b").Attrs(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	attrs()
	next := hostcred.Token{Value: "ya29.next", Expires: time.Now().Add(time.Hour)}
	st := &fixedStore{tok: next}
	if renewed, err := src.Renew(context.Background(), st); !renewed || err != nil {
		t.Fatalf("Renew = %v, %v", renewed, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		attrs()
		mu.Lock()
		last := seen[len(seen)-1]
		all := append([]string(nil), seen...)
		mu.Unlock()
		if last == "Bearer ya29.next" {
			if all[0] != "Bearer ya29.first" {
				t.Fatalf("first call sent %q", all[0])
			}
			for _, h := range all {
				if h != "Bearer ya29.first" && h != "Bearer ya29.next" {
					t.Fatalf("a call sent %q", h)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client never sent the renewed token: %v", all)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type fixedStore struct{ tok hostcred.Token }

func (f *fixedStore) HostToken(context.Context) (hostcred.Token, error) { return f.tok, nil }
func (f *fixedStore) OfferHostToken(context.Context, hostcred.Token) (hostcred.Token, error) {
	return f.tok, nil
}

func TestTokenNeverPrintsItsValue(t *testing.T) {
	tok := hostcred.Token{Value: "ya29.secret-value", Expires: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "token", tok, "env", hostcred.Env(tok)[hostcred.EnvExpires])
	for _, s := range []string{buf.String(), tok.String()} {
		if strings.Contains(s, "secret-value") || !strings.Contains(s, "2026-12-01T12:00:00Z") {
			t.Fatalf("printed %q", s)
		}
	}
}

func TestFromEnv(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if _, ok, err := hostcred.FromEnv(get); ok || err != nil {
		t.Fatalf("no token: %v %v", ok, err)
	}
	env[hostcred.EnvToken] = "ya29.x"
	env[hostcred.EnvExpires] = "soon"
	if _, _, err := hostcred.FromEnv(get); err == nil || !strings.Contains(err.Error(), hostcred.EnvExpires) {
		t.Fatalf("bad expiry: %v", err)
	}
}

// failingMinter mints until it is told to fail.
type failingMinter struct {
	hostcred.Minter
	mu   sync.Mutex
	fail bool
}

func (f *failingMinter) Mint(ctx context.Context) (hostcred.Token, error) {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		return hostcred.Token{}, errors.New("IAM Credentials unavailable")
	}
	return f.Minter.Mint(ctx)
}

// While minting fails, launches get the held token as long as it has a
// quarter of the margin left, and fail after that.
func TestLaunchesOutliveAFailingMinter(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	m := &failingMinter{Minter: w.minter(4 * time.Second)}
	k := hostcred.NewKeeper(w.store(), m, 2*time.Second)
	held, err := k.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.fail = true
	m.mu.Unlock()
	time.Sleep(time.Until(held.Expires.Add(-2*time.Second)) + 100*time.Millisecond)
	if _, err := k.Token(ctx); err == nil || !strings.Contains(err.Error(), "IAM Credentials unavailable") {
		t.Fatalf("Token with a failing minter: %v", err)
	}
	env, err := k.LaunchEnv(ctx)
	if err != nil || env[hostcred.EnvToken] != held.Value {
		t.Fatalf("LaunchEnv within the margin = %v, %v; want the held token", env[hostcred.EnvToken] == held.Value, err)
	}
	time.Sleep(time.Until(held.Expires.Add(-500*time.Millisecond)) + 100*time.Millisecond)
	if _, err := k.LaunchEnv(ctx); err == nil || !strings.Contains(err.Error(), "host token for the launch") {
		t.Fatalf("LaunchEnv with the held token nearly expired: %v", err)
	}
}

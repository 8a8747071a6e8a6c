// Package iam is the local cloud's IAM Service Account Credentials API
// (iamcredentials.googleapis.com, gRPC google.iam.credentials.v1): the
// one method sandrun calls, GenerateAccessToken, which the dispatcher and
// the reaper use to mint the session hosts' access tokens.
//
// The local cloud checks no credentials, so a token minted here grants
// nothing; what the fake keeps is the API's contract: the name format,
// a scope, a lifetime of at most an hour, and an expiry time the caller
// must respect. It remembers what it minted (Minted), so that tests can
// tell a minted token from any other string.
package iam

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"sync"
	"time"

	"cloud.google.com/go/iam/credentials/apiv1/credentialspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Lifetimes, as the API has them without the organization policy that
// allows up to 12 hours.
const (
	DefaultLifetime = time.Hour
	MaxLifetime     = time.Hour
)

// accountName is projects/-/serviceAccounts/EMAIL-OR-UNIQUE-ID; sandrun
// names accounts by email.
var accountName = regexp.MustCompile(`^projects/-/serviceAccounts/([a-z][-a-z0-9]{4,28}[a-z0-9]@[-a-z0-9.]+\.iam\.gserviceaccount\.com)$`)

// Token is what the server minted.
type Token struct {
	Account string
	Expires time.Time
}

// Server serves GenerateAccessToken; its other methods are unimplemented.
type Server struct {
	credentialspb.UnimplementedIAMCredentialsServer
	now func() time.Time

	mu     sync.Mutex
	minted map[string]Token
}

// New returns a server with nothing minted.
func New() *Server { return &Server{now: time.Now, minted: map[string]Token{}} }

// Register adds the API to a gRPC server.
func (s *Server) Register(r grpc.ServiceRegistrar) { credentialspb.RegisterIAMCredentialsServer(r, s) }

// Minted tells whether token was minted here, for which account and until when.
func (s *Server) Minted(token string) (Token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.minted[token]
	return t, ok
}

// GenerateAccessToken mints a random opaque token for the named account.
func (s *Server) GenerateAccessToken(_ context.Context, req *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error) {
	m := accountName.FindStringSubmatch(req.GetName())
	if m == nil {
		return nil, status.Errorf(codes.InvalidArgument, "name %q is not projects/-/serviceAccounts/EMAIL", req.GetName())
	}
	if len(req.GetDelegates()) > 0 {
		return nil, status.Error(codes.Unimplemented, "delegation is not emulated")
	}
	if len(req.GetScope()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "scope is required")
	}
	lifetime := DefaultLifetime
	if req.GetLifetime() != nil {
		if err := req.GetLifetime().CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "lifetime: %v", err)
		}
		lifetime = req.GetLifetime().AsDuration()
	}
	if lifetime <= 0 || lifetime > MaxLifetime {
		return nil, status.Errorf(codes.InvalidArgument, "lifetime %s: must be more than 0s and at most %s", durationpb.New(lifetime).AsDuration(), MaxLifetime)
	}
	b := make([]byte, 24)
	rand.Read(b)
	token := "ya29.local." + hex.EncodeToString(b)
	t := Token{Account: m[1], Expires: s.now().Add(lifetime)}
	s.mu.Lock()
	s.minted[token] = t
	s.mu.Unlock()
	return &credentialspb.GenerateAccessTokenResponse{AccessToken: token, ExpireTime: timestamppb.New(t.Expires)}, nil
}

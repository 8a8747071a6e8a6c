// Package deploy holds what builds sandrun's images: a Dockerfile per
// program (dispatcher, reaper, executor), their .dockerignore files, and the
// Cloud Build configuration that builds and pushes them
// (cloudbuild.yaml). The Go package itself has no code; its tests check
// the Dockerfiles' structure and the build configuration. docs/deploy.md is
// the guide.
package deploy

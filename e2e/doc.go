// Package e2e holds sandrun's end-to-end tests: the real sandrun binary as
// session host, launched by the Cloud Run fake, with the dispatcher and the
// reaper, all on the local cloud, driven as a backend drives them.
package e2e

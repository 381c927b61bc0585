package api

// Fingerprint exposes the request fingerprint to the package's external tests.
var Fingerprint = fingerprint

// Unit specs use fakes and finish in well under a second; a wedged one should fail fast instead of
// holding the run for the e2e budget. (Jest reads testTimeout from the global config only, so a
// per-project bound has to be set here.)
jest.setTimeout(10_000);

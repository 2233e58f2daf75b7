#!/usr/bin/env node
// The restpipe-client executable of the restpipe package: the CLI of @restpipe/client.
import '@restpipe/client/cli';

#!/usr/bin/env node
// The restpipe-server executable of the restpipe package: the CLI of @restpipe/server.
import '@restpipe/server/cli';

#!/usr/bin/env node
// The restpipe-certs executable of the restpipe package: the CLI of @restpipe/certs-tool.
import '@restpipe/certs-tool/cli';

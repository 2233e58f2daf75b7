#!/usr/bin/env node
// The restpipe-server executable: the compiled CLI (npm ci builds dist/ after linking this file).
import '../dist/cli.js';

/**
 * A preload (`--import`) that records the URL of every module the process imports through the
 * ES module loader, one per line, in the file named by TCPKIT_TEST_MODULE_LOG. The tests of the
 * CLI's start-up run the CLI with it to see what a command loads. CommonJS `require` calls made
 * inside packages (commander's own files) are not seen; the package itself is.
 */
import { register } from 'node:module';

const file = process.env.TCPKIT_TEST_MODULE_LOG;
if (file !== undefined && file !== '') register(new URL('./module-log-hooks.js', import.meta.url), { data: { file } });

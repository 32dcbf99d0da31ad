/**
 * nginx for the file suite: a minimal configuration in a folder of its own (daemon off, one
 * worker, pid, logs and temp files in that folder, `sendfile on; tcp_nopush on;`, a keep-alive
 * connection good for 100,000 requests, no access log), listening on 127.0.0.1 on a free port.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { Daemon, freePort, waitListening } from './processes.js';

let nginxTempDirectives: string[] | undefined;

/** A path as an nginx string, quoted (a temp folder may hold spaces). */
function quoted(file: string): string {
  return `"${file.replace(/["\\]/g, '\\$&')}"`;
}

/** Temp-path directives for the modules this nginx has, so it never touches /var/lib/nginx. */
function nginxTemps(nginxPath: string, prefix: string): string[] {
  if (nginxTempDirectives === undefined) {
    const version = spawnSync(nginxPath, ['-V'], { encoding: 'utf8' });
    const configure = `${version.stdout ?? ''}${version.stderr ?? ''}`;
    const modules: Array<[string, string]> = [
      ['client-body', 'client_body_temp_path'],
      ['proxy', 'proxy_temp_path'],
      ['fastcgi', 'fastcgi_temp_path'],
      ['uwsgi', 'uwsgi_temp_path'],
      ['scgi', 'scgi_temp_path'],
    ];
    nginxTempDirectives = modules
      .filter(([module]) => module === 'client-body' || (configure.includes(`--http-${module}-temp-path`) && !configure.includes(`--without-http_${module}_module`)))
      .map(([, directive]) => directive);
  }
  return nginxTempDirectives.map((directive) => `  ${directive} ${quoted(path.join(prefix, directive))};`);
}

/** nginx with sendfile, one worker, on 127.0.0.1:port, serving `root`; resolves once it listens. */
export async function startNginx(nginxPath: string, scratchDir: string, root: string): Promise<{ daemon: Daemon; port: number }> {
  const port = await freePort();
  const prefix = path.join(scratchDir, `nginx-${port}`);
  await mkdir(prefix, { recursive: true });
  const conf = path.join(prefix, 'nginx.conf');
  await writeFile(
    conf,
    [
      'daemon off;',
      'master_process on;',
      'worker_processes 1;',
      // As root, nginx's worker would switch to an unprivileged user that cannot read a 0700 temp folder.
      ...(process.getuid?.() === 0 ? ['user root;'] : []),
      `pid ${quoted(path.join(prefix, 'nginx.pid'))};`,
      `error_log ${quoted(path.join(prefix, 'error.log'))} warn;`,
      'events { worker_connections 256; }',
      'http {',
      '  sendfile on;',
      '  tcp_nopush on;',
      '  keepalive_requests 100000;',
      '  keepalive_timeout 60s;',
      '  access_log off;',
      '  default_type application/octet-stream;',
      ...nginxTemps(nginxPath, prefix),
      `  server { listen 127.0.0.1:${port}; root ${quoted(root)}; }`,
      '}',
      '',
    ].join('\n'),
  );
  const daemon = Daemon.start(nginxPath, ['-c', conf, '-p', `${prefix}/`, '-e', path.join(prefix, 'error.log')], 'nginx');
  try {
    await waitListening(port, 'nginx', () => daemon.alive);
    return { daemon, port };
  } catch (error) {
    await daemon.stop('SIGKILL');
    throw error;
  }
}

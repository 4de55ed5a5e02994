/**
 * A bare streaming proxy for bench:cluster's --bare-proxy reference: node:http server and
 * keep-alive client, the body relayed chunk by chunk as it arrives, no framework, no
 * parsing of events, no auth, no retries, no metrics. What the gateway costs beyond this is
 * its own code; what this costs is Node's HTTP stack and loopback sockets.
 *
 * Run: node dist/bench/bare-proxy.js PORT WORKER_URL CLUSTER_SECRET
 */
import http from 'node:http';

const [port, workerUrl, secret] = process.argv.slice(2);
const worker = new URL(workerUrl!);
const agent = new http.Agent({ keepAlive: true, noDelay: true });

http
  .createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      const up = http.request({
        hostname: worker.hostname,
        port: worker.port,
        path: req.url,
        method: req.method,
        agent,
        headers: {
          'content-type': req.headers['content-type'] ?? 'application/json',
          'content-length': body.length,
          'x-autoglm-cluster-secret': secret,
        },
      });
      up.on('response', (ur) => {
        res.writeHead(ur.statusCode ?? 502, { 'content-type': ur.headers['content-type'] ?? 'text/event-stream' });
        ur.on('data', (c: Buffer) => res.write(c));
        ur.on('end', () => res.end());
      });
      up.on('error', () => res.destroy());
      up.end(body);
    });
  })
  .listen(Number(port), '127.0.0.1');

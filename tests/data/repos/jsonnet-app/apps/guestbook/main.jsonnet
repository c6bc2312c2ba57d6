// The guestbook frontend: one Deployment, its Service and its settings.
// Top-level arguments: name (string) and replicas (code); external variable: env.
local k = import 'k.libsonnet';

function(name, replicas=1)
  local env = std.extVar('env');
  local labels = k.labels(name, 'frontend');
  [
    k.configMap(name + '-settings', {
      ENVIRONMENT: env,
      GUESTBOOK_TITLE: 'Sign the ' + env + ' guestbook',
      REDIS_HOST: name + '-redis',
    }, labels),
    k.deployment(name, replicas, [
      k.container('guestbook', 'gcr.io/google-samples/gb-frontend:v5', 80) + {
        envFrom: [{ configMapRef: { name: name + '-settings' } }],
      },
    ], labels),
    k.service(name, 80, labels),
  ]

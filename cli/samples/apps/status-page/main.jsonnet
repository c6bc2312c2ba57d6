// The status page: a small web app that probes the demo's other applications.
// Top-level arguments: namespace (a string) and replicas (code); external variable: team.
//
//   jsonnet -J lib --ext-str team=platform --tla-str namespace=status-page \
//     --tla-code replicas=2 status-page/main.jsonnet
local kube = import 'kube.libsonnet';

// What the page probes: the other demo applications, by their in-cluster names.
local checks = [
  { name: 'guestbook', url: 'http://guestbook-ui.guestbook.svc/' },
  { name: 'podinfo', url: 'http://podinfo.podinfo.svc:9898/readyz' },
  { name: 'api', url: 'http://api.api.svc/health' },
];

function(namespace, replicas=1)
  local team = std.extVar('team');
  local name = 'status-page';
  local labels = kube.labels(name, 'monitoring') + { team: team };
  local inNamespace(obj) = obj + { metadata+: { namespace: namespace } };
  [
    // Declared here, not left to the platform to create: it carries the team's labels.
    kube.namespace(namespace, {
      team: team,
      'pod-security.kubernetes.io/enforce': 'baseline',
    }),
  ] + std.map(inNamespace, [
    kube.configMap(name, {
      TEAM: team,
      'checks.json': std.manifestJsonEx(checks, '  '),
    }, labels),
    kube.deployment(name, replicas, [
      kube.container(name, 'louislam/uptime-kuma:1.23.16', 3001) + {
        envFrom: [{ configMapRef: { name: name } }],
      },
    ], labels),
    kube.service(name, 80, labels),
  ])

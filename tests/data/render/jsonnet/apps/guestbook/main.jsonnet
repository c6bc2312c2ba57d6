local k = import 'k8s.libsonnet';
local params = import 'params.libsonnet';

function(env, replicas=1)
  local features = std.extVar('features');
  [
    k.deployment('guestbook-' + env, params.image, replicas),
    [
      k.configMap('guestbook-region', { region: std.extVar('region') }),
      [k.configMap('guestbook-features', { [f]: 'on' for f in features })],
    ],
  ]

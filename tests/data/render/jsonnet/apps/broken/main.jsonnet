local k = import 'k8s.libsonnet';

local replicas(env) =
  if env == 'prod' then 3
  else error 'unknown environment ' + env;

k.deployment('broken', 'nginx:1.27', replicas(std.extVar('env')))

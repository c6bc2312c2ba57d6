local k = import 'k8s.libsonnet';

{
  apiVersion: 'v1',
  kind: 'List',
  items: [k.configMap('listed-a'), k.configMap('listed-b')],
}

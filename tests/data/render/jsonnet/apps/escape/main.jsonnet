local secrets = import '../../../outside.libsonnet';

{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: secrets }

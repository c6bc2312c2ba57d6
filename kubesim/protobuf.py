"""Request bodies in Kubernetes protobuf, read into the JSON dicts the rest of kubesim handles.

kubectl's typed generators (``kubectl create namespace|configmap|secret|deployment|job|
service …``) and client-go's typed clients send ``application/vnd.kubernetes.protobuf``,
not JSON.  A real API server decodes that into the same Go structs as JSON; kubesim works on
dicts, so this module turns the protobuf body into the dict that ``json.Marshal`` of those
structs would have produced, and the request then takes the JSON path unchanged (defaults,
validation, dry-run, managed fields).  Responses stay JSON, which clients that sent protobuf
accept.

No maintained package on PyPI ships the Kubernetes API messages compiled for Python (the one
there, ``k8s-proto``, stopped in 2019 at core/v1 and needs protobuf < 4), so the decoder is
small and table-driven: a wire-format reader, and field tables copied from the upstream
``generated.proto`` files (k8s.io/api core/v1, apps/v1, batch/v1, networking/v1, rbac/v1,
policy/v1, autoscaling/v1; k8s.io/apimachinery meta/v1, intstr, resource) with the Go types'
pointer-ness and ``omitempty`` from their ``types.go``.

The JSON shape follows Go's marshalling of the decoded struct, because that is what a real
server stores: struct fields are written even when empty (``spec: {}``, ``resources: {}``),
zero scalars are dropped unless the Go field is a pointer (``replicas: 0`` stays) or has no
``omitempty`` (``name`` of a container), zero timestamps are dropped.  Fields not in the
tables are skipped, as a server built before they existed would; a body that cannot be read
raises ``ProtobufError`` naming where, and a kind the tables do not cover raises
``UnsupportedKind``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MAGIC",
    "MEDIA_TYPE",
    "SUPPORTED_KINDS",
    "ProtobufError",
    "UnsupportedKind",
    "decode",
]

#: The media type of a protobuf request body.
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
#: Every Kubernetes protobuf body starts with these four bytes, then a ``runtime.Unknown``.
MAGIC = b"k8s\x00"

Obj = dict[str, Any]


class ProtobufError(ValueError):
    """The body is not a readable Kubernetes protobuf message; the text says where."""


class UnsupportedKind(ProtobufError):
    """A well-formed envelope holding a kind the field tables do not cover."""


# -- the field tables ------------------------------------------------------------------
#
# One block per message, as in generated.proto: ``NUMBER jsonName TYPE [flags]``.
# TYPE is a scalar (string, bytes, bool, int32, int64), one of the special messages
# (Time, MicroTime, Quantity, IntOrString, FieldsV1), or a message named below;
# ``[]T`` is a repeated field and ``map[T]`` a map<string, T>.
# Flags: ``*`` the Go field is a pointer (a zero value that was sent is kept),
#        ``!`` the JSON tag has no omitempty (a zero value is written),
#        ``inline`` an embedded struct whose fields JSON flattens into the parent.

_SCHEMA = """
# runtime.TypeMeta, inside runtime.Unknown {1 typeMeta, 2 raw, 3 contentEncoding, 4 contentType}
message TypeMeta
  1 apiVersion string
  2 kind string

# -- k8s.io/apimachinery meta/v1 --

message ObjectMeta
  1 name string
  2 generateName string
  3 namespace string
  4 selfLink string
  5 uid string
  6 resourceVersion string
  7 generation int64
  8 creationTimestamp Time
  9 deletionTimestamp Time
  10 deletionGracePeriodSeconds int64 *
  11 labels map[string]
  12 annotations map[string]
  13 ownerReferences []OwnerReference
  14 finalizers []string
  17 managedFields []ManagedFieldsEntry

message OwnerReference
  5 apiVersion string !
  1 kind string !
  3 name string !
  4 uid string !
  6 controller bool *
  7 blockOwnerDeletion bool *

message ManagedFieldsEntry
  1 manager string
  2 operation string
  3 apiVersion string
  4 time Time
  6 fieldsType string
  7 fieldsV1 FieldsV1
  8 subresource string

message LabelSelector
  1 matchLabels map[string]
  2 matchExpressions []LabelSelectorRequirement

message LabelSelectorRequirement
  1 key string !
  2 operator string !
  3 values []string

message Condition
  1 type string !
  2 status string !
  3 observedGeneration int64
  4 lastTransitionTime Time
  5 reason string !
  6 message string !

# -- k8s.io/api core/v1 --

message Namespace
  1 metadata ObjectMeta
  2 spec NamespaceSpec
  3 status NamespaceStatus

message NamespaceSpec
  1 finalizers []string

message NamespaceStatus
  1 phase string
  2 conditions []NamespaceCondition

message NamespaceCondition
  1 type string !
  2 status string !
  4 lastTransitionTime Time
  5 reason string
  6 message string

message ConfigMap
  1 metadata ObjectMeta
  4 immutable bool *
  2 data map[string]
  3 binaryData map[bytes]

message Secret
  1 metadata ObjectMeta
  5 immutable bool *
  2 data map[bytes]
  4 stringData map[string]
  3 type string

message ServiceAccount
  1 metadata ObjectMeta
  2 secrets []ObjectReference
  3 imagePullSecrets []LocalObjectReference
  4 automountServiceAccountToken bool *

message ObjectReference
  1 kind string
  2 namespace string
  3 name string
  4 uid string
  5 apiVersion string
  6 resourceVersion string
  7 fieldPath string

message LocalObjectReference
  1 name string

message TypedLocalObjectReference
  1 apiGroup string *
  2 kind string !
  3 name string !

message Service
  1 metadata ObjectMeta
  2 spec ServiceSpec
  3 status ServiceStatus

message ServiceSpec
  1 ports []ServicePort
  2 selector map[string]
  3 clusterIP string
  18 clusterIPs []string
  4 type string
  5 externalIPs []string
  7 sessionAffinity string
  8 loadBalancerIP string
  9 loadBalancerSourceRanges []string
  10 externalName string
  11 externalTrafficPolicy string
  12 healthCheckNodePort int32
  13 publishNotReadyAddresses bool
  14 sessionAffinityConfig SessionAffinityConfig
  19 ipFamilies []string
  17 ipFamilyPolicy string *
  20 allocateLoadBalancerNodePorts bool *
  21 loadBalancerClass string *
  22 internalTrafficPolicy string *
  23 trafficDistribution string *

message ServicePort
  1 name string
  2 protocol string
  6 appProtocol string *
  3 port int32 !
  4 targetPort IntOrString
  5 nodePort int32

message SessionAffinityConfig
  1 clientIP ClientIPConfig

message ClientIPConfig
  1 timeoutSeconds int32 *

message ServiceStatus
  1 loadBalancer LoadBalancerStatus
  2 conditions []Condition

message LoadBalancerStatus
  1 ingress []LoadBalancerIngress

message LoadBalancerIngress
  1 ip string
  2 hostname string
  3 ipMode string *
  4 ports []PortStatus

message PortStatus
  1 port int32 !
  2 protocol string !
  3 error string *

message PodTemplateSpec
  1 metadata ObjectMeta
  2 spec PodSpec

message PodSpec
  1 volumes []Volume
  20 initContainers []Container
  2 containers []Container
  34 ephemeralContainers []EphemeralContainer
  3 restartPolicy string
  4 terminationGracePeriodSeconds int64 *
  5 activeDeadlineSeconds int64 *
  6 dnsPolicy string
  7 nodeSelector map[string]
  8 serviceAccountName string
  9 serviceAccount string
  21 automountServiceAccountToken bool *
  10 nodeName string
  11 hostNetwork bool
  12 hostPID bool
  13 hostIPC bool
  27 shareProcessNamespace bool *
  14 securityContext PodSecurityContext
  15 imagePullSecrets []LocalObjectReference
  16 hostname string
  17 subdomain string
  18 affinity Affinity
  19 schedulerName string
  22 tolerations []Toleration
  23 hostAliases []HostAlias
  24 priorityClassName string
  25 priority int32 *
  26 dnsConfig PodDNSConfig
  28 readinessGates []PodReadinessGate
  29 runtimeClassName string *
  30 enableServiceLinks bool *
  31 preemptionPolicy string *
  32 overhead map[Quantity]
  33 topologySpreadConstraints []TopologySpreadConstraint
  35 setHostnameAsFQDN bool *
  36 os PodOS
  37 hostUsers bool *
  38 schedulingGates []PodSchedulingGate

message PodOS
  1 name string !

message PodSchedulingGate
  1 name string !

message Container
  1 name string !
  2 image string
  3 command []string
  4 args []string
  5 workingDir string
  6 ports []ContainerPort
  19 envFrom []EnvFromSource
  7 env []EnvVar
  8 resources ResourceRequirements
  23 resizePolicy []ContainerResizePolicy
  24 restartPolicy string *
  9 volumeMounts []VolumeMount
  21 volumeDevices []VolumeDevice
  10 livenessProbe Probe
  11 readinessProbe Probe
  22 startupProbe Probe
  12 lifecycle Lifecycle
  13 terminationMessagePath string
  20 terminationMessagePolicy string
  14 imagePullPolicy string
  15 securityContext SecurityContext
  16 stdin bool
  17 stdinOnce bool
  18 tty bool

message EphemeralContainer
  1 ephemeralContainerCommon Container inline
  2 targetContainerName string

message ContainerPort
  1 name string
  2 hostPort int32
  3 containerPort int32 !
  4 protocol string
  5 hostIP string

message ContainerResizePolicy
  1 resourceName string !
  2 restartPolicy string !

message EnvVar
  1 name string !
  2 value string
  3 valueFrom EnvVarSource

message EnvVarSource
  1 fieldRef ObjectFieldSelector
  2 resourceFieldRef ResourceFieldSelector
  3 configMapKeyRef ConfigMapKeySelector
  4 secretKeyRef SecretKeySelector

message EnvFromSource
  1 prefix string
  2 configMapRef ConfigMapEnvSource
  3 secretRef SecretEnvSource

message ObjectFieldSelector
  1 apiVersion string
  2 fieldPath string !

message ResourceFieldSelector
  1 containerName string
  2 resource string !
  3 divisor Quantity

message ConfigMapKeySelector
  1 localObjectReference LocalObjectReference inline
  2 key string !
  3 optional bool *

message SecretKeySelector
  1 localObjectReference LocalObjectReference inline
  2 key string !
  3 optional bool *

message ConfigMapEnvSource
  1 localObjectReference LocalObjectReference inline
  2 optional bool *

message SecretEnvSource
  1 localObjectReference LocalObjectReference inline
  2 optional bool *

message ResourceRequirements
  1 limits map[Quantity]
  2 requests map[Quantity]
  3 claims []ResourceClaim

message ResourceClaim
  1 name string !
  2 request string

message VolumeMount
  1 name string !
  2 readOnly bool
  7 recursiveReadOnly string *
  3 mountPath string !
  4 subPath string
  5 mountPropagation string *
  6 subPathExpr string

message VolumeDevice
  1 name string !
  2 devicePath string !

message Probe
  1 handler ProbeHandler inline
  2 initialDelaySeconds int32
  3 timeoutSeconds int32
  4 periodSeconds int32
  5 successThreshold int32
  6 failureThreshold int32
  7 terminationGracePeriodSeconds int64 *

message ProbeHandler
  1 exec ExecAction
  2 httpGet HTTPGetAction
  3 tcpSocket TCPSocketAction
  4 grpc GRPCAction

message Lifecycle
  1 postStart LifecycleHandler
  2 preStop LifecycleHandler

message LifecycleHandler
  1 exec ExecAction
  2 httpGet HTTPGetAction
  3 tcpSocket TCPSocketAction
  4 sleep SleepAction

message ExecAction
  1 command []string

message HTTPGetAction
  1 path string
  2 port IntOrString !
  3 host string
  4 scheme string
  5 httpHeaders []HTTPHeader

message HTTPHeader
  1 name string !
  2 value string !

message TCPSocketAction
  1 port IntOrString !
  2 host string

message GRPCAction
  1 port int32 !
  2 service string *

message SleepAction
  1 seconds int64 !

message SecurityContext
  1 capabilities Capabilities
  2 privileged bool *
  3 seLinuxOptions SELinuxOptions
  10 windowsOptions WindowsSecurityContextOptions
  4 runAsUser int64 *
  8 runAsGroup int64 *
  5 runAsNonRoot bool *
  6 readOnlyRootFilesystem bool *
  7 allowPrivilegeEscalation bool *
  9 procMount string *
  11 seccompProfile SeccompProfile
  12 appArmorProfile AppArmorProfile

message PodSecurityContext
  1 seLinuxOptions SELinuxOptions
  8 windowsOptions WindowsSecurityContextOptions
  2 runAsUser int64 *
  6 runAsGroup int64 *
  3 runAsNonRoot bool *
  4 supplementalGroups []int64
  12 supplementalGroupsPolicy string *
  5 fsGroup int64 *
  7 sysctls []Sysctl
  9 fsGroupChangePolicy string *
  10 seccompProfile SeccompProfile
  11 appArmorProfile AppArmorProfile
  13 seLinuxChangePolicy string *

message Capabilities
  1 add []string
  2 drop []string

message SELinuxOptions
  1 user string
  2 role string
  3 type string
  4 level string

message WindowsSecurityContextOptions
  1 gmsaCredentialSpecName string *
  2 gmsaCredentialSpec string *
  3 runAsUserName string *
  4 hostProcess bool *

message SeccompProfile
  1 type string !
  2 localhostProfile string *

message AppArmorProfile
  1 type string !
  2 localhostProfile string *

message Sysctl
  1 name string !
  2 value string !

message Toleration
  1 key string
  2 operator string
  3 value string
  4 effect string
  5 tolerationSeconds int64 *

message HostAlias
  1 ip string !
  2 hostnames []string

message PodDNSConfig
  1 nameservers []string
  2 searches []string
  3 options []PodDNSConfigOption

message PodDNSConfigOption
  1 name string
  2 value string *

message PodReadinessGate
  1 conditionType string !

message TopologySpreadConstraint
  1 maxSkew int32 !
  2 topologyKey string !
  3 whenUnsatisfiable string !
  4 labelSelector LabelSelector
  5 minDomains int32 *
  6 nodeAffinityPolicy string *
  7 nodeTaintsPolicy string *
  8 matchLabelKeys []string

message Affinity
  1 nodeAffinity NodeAffinity
  2 podAffinity PodAffinity
  3 podAntiAffinity PodAntiAffinity

message NodeAffinity
  1 requiredDuringSchedulingIgnoredDuringExecution NodeSelector
  2 preferredDuringSchedulingIgnoredDuringExecution []PreferredSchedulingTerm

message NodeSelector
  1 nodeSelectorTerms []NodeSelectorTerm

message NodeSelectorTerm
  1 matchExpressions []NodeSelectorRequirement
  2 matchFields []NodeSelectorRequirement

message NodeSelectorRequirement
  1 key string !
  2 operator string !
  3 values []string

message PreferredSchedulingTerm
  1 weight int32 !
  2 preference NodeSelectorTerm

message PodAffinity
  1 requiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm
  2 preferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm

message PodAntiAffinity
  1 requiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm
  2 preferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm

message PodAffinityTerm
  1 labelSelector LabelSelector
  2 namespaces []string
  3 topologyKey string !
  4 namespaceSelector LabelSelector
  5 matchLabelKeys []string
  6 mismatchLabelKeys []string

message WeightedPodAffinityTerm
  1 weight int32 !
  2 podAffinityTerm PodAffinityTerm

message Volume
  1 name string !
  2 volumeSource VolumeSource inline

message VolumeSource
  1 hostPath HostPathVolumeSource
  2 emptyDir EmptyDirVolumeSource
  6 secret SecretVolumeSource
  7 nfs NFSVolumeSource
  10 persistentVolumeClaim PersistentVolumeClaimVolumeSource
  16 downwardAPI DownwardAPIVolumeSource
  19 configMap ConfigMapVolumeSource
  26 projected ProjectedVolumeSource
  28 csi CSIVolumeSource

message HostPathVolumeSource
  1 path string !
  2 type string *

message EmptyDirVolumeSource
  1 medium string
  2 sizeLimit Quantity *

message SecretVolumeSource
  1 secretName string
  2 items []KeyToPath
  3 defaultMode int32 *
  4 optional bool *

message ConfigMapVolumeSource
  1 localObjectReference LocalObjectReference inline
  2 items []KeyToPath
  3 defaultMode int32 *
  4 optional bool *

message KeyToPath
  1 key string !
  2 path string !
  3 mode int32 *

message NFSVolumeSource
  1 server string !
  2 path string !
  3 readOnly bool

message PersistentVolumeClaimVolumeSource
  1 claimName string !
  2 readOnly bool

message DownwardAPIVolumeSource
  1 items []DownwardAPIVolumeFile
  2 defaultMode int32 *

message DownwardAPIVolumeFile
  1 path string !
  2 fieldRef ObjectFieldSelector
  3 resourceFieldRef ResourceFieldSelector
  4 mode int32 *

message ProjectedVolumeSource
  1 sources []VolumeProjection
  2 defaultMode int32 *

message VolumeProjection
  1 secret SecretProjection
  2 downwardAPI DownwardAPIProjection
  3 configMap ConfigMapProjection
  4 serviceAccountToken ServiceAccountTokenProjection

message SecretProjection
  1 localObjectReference LocalObjectReference inline
  2 items []KeyToPath
  4 optional bool *

message ConfigMapProjection
  1 localObjectReference LocalObjectReference inline
  2 items []KeyToPath
  4 optional bool *

message DownwardAPIProjection
  1 items []DownwardAPIVolumeFile

message ServiceAccountTokenProjection
  1 audience string
  2 expirationSeconds int64 *
  3 path string !

message CSIVolumeSource
  1 driver string !
  2 readOnly bool *
  3 fsType string *
  4 volumeAttributes map[string]
  5 nodePublishSecretRef LocalObjectReference

# -- k8s.io/api apps/v1 --

message Deployment
  1 metadata ObjectMeta
  2 spec DeploymentSpec
  3 status DeploymentStatus

message DeploymentSpec
  1 replicas int32 *
  2 selector LabelSelector
  3 template PodTemplateSpec
  4 strategy DeploymentStrategy
  5 minReadySeconds int32
  6 revisionHistoryLimit int32 *
  7 paused bool
  9 progressDeadlineSeconds int32 *

message DeploymentStrategy
  1 type string
  2 rollingUpdate RollingUpdateDeployment

message RollingUpdateDeployment
  1 maxUnavailable IntOrString *
  2 maxSurge IntOrString *

message DeploymentStatus
  1 observedGeneration int64
  2 replicas int32
  3 updatedReplicas int32
  7 readyReplicas int32
  4 availableReplicas int32
  5 unavailableReplicas int32
  9 terminatingReplicas int32 *
  6 conditions []DeploymentCondition
  8 collisionCount int32 *

message DeploymentCondition
  1 type string !
  2 status string !
  6 lastUpdateTime Time
  7 lastTransitionTime Time
  4 reason string
  5 message string

# -- k8s.io/api batch/v1 --

message Job
  1 metadata ObjectMeta
  2 spec JobSpec
  3 status JobStatus

message JobSpec
  1 parallelism int32 *
  2 completions int32 *
  3 activeDeadlineSeconds int64 *
  11 podFailurePolicy PodFailurePolicy
  7 backoffLimit int32 *
  12 backoffLimitPerIndex int32 *
  13 maxFailedIndexes int32 *
  4 selector LabelSelector
  5 manualSelector bool *
  6 template PodTemplateSpec
  8 ttlSecondsAfterFinished int32 *
  9 completionMode string *
  10 suspend bool *
  14 podReplacementPolicy string *
  15 managedBy string *

message PodFailurePolicy
  1 rules []PodFailurePolicyRule !

message PodFailurePolicyRule
  1 action string !
  2 onExitCodes PodFailurePolicyOnExitCodesRequirement
  3 onPodConditions []PodFailurePolicyOnPodConditionsPattern !

message PodFailurePolicyOnExitCodesRequirement
  1 containerName string *
  2 operator string !
  3 values []int32 !

message PodFailurePolicyOnPodConditionsPattern
  1 type string !
  2 status string !

message JobStatus
  1 conditions []JobCondition
  2 startTime Time
  3 completionTime Time
  4 active int32
  5 succeeded int32
  6 failed int32
  9 ready int32 *
  7 completedIndexes string
  10 failedIndexes string *
  11 terminating int32 *

message JobCondition
  1 type string !
  2 status string !
  3 lastProbeTime Time
  4 lastTransitionTime Time
  5 reason string
  6 message string

message CronJob
  1 metadata ObjectMeta
  2 spec CronJobSpec
  3 status CronJobStatus

message CronJobSpec
  1 schedule string !
  8 timeZone string *
  2 startingDeadlineSeconds int64 *
  3 concurrencyPolicy string
  4 suspend bool *
  5 jobTemplate JobTemplateSpec !
  6 successfulJobsHistoryLimit int32 *
  7 failedJobsHistoryLimit int32 *

message JobTemplateSpec
  1 metadata ObjectMeta
  2 spec JobSpec

message CronJobStatus
  1 active []ObjectReference
  4 lastScheduleTime Time
  5 lastSuccessfulTime Time

# -- k8s.io/api rbac/v1 --

message Role
  1 metadata ObjectMeta
  2 rules []PolicyRule !

message ClusterRole
  1 metadata ObjectMeta
  2 rules []PolicyRule !
  3 aggregationRule AggregationRule

message PolicyRule
  1 verbs []string !
  2 apiGroups []string
  3 resources []string
  4 resourceNames []string
  5 nonResourceURLs []string

message AggregationRule
  1 clusterRoleSelectors []LabelSelector

message RoleBinding
  1 metadata ObjectMeta
  2 subjects []Subject
  3 roleRef RoleRef

message ClusterRoleBinding
  1 metadata ObjectMeta
  2 subjects []Subject
  3 roleRef RoleRef

message Subject
  1 kind string !
  2 apiGroup string
  3 name string !
  4 namespace string

message RoleRef
  1 apiGroup string !
  2 kind string !
  3 name string !

# -- k8s.io/api networking/v1 --

message Ingress
  1 metadata ObjectMeta
  2 spec IngressSpec
  3 status IngressStatus

message IngressSpec
  4 ingressClassName string *
  1 defaultBackend IngressBackend
  2 tls []IngressTLS
  3 rules []IngressRule

message IngressBackend
  4 service IngressServiceBackend
  3 resource TypedLocalObjectReference

message IngressServiceBackend
  1 name string !
  2 port ServiceBackendPort

message ServiceBackendPort
  1 name string
  2 number int32

message IngressTLS
  1 hosts []string
  2 secretName string

message IngressRule
  1 host string
  2 ingressRuleValue IngressRuleValue inline

message IngressRuleValue
  1 http HTTPIngressRuleValue

message HTTPIngressRuleValue
  1 paths []HTTPIngressPath !

message HTTPIngressPath
  1 path string
  3 pathType string *
  2 backend IngressBackend

message IngressStatus
  1 loadBalancer IngressLoadBalancerStatus

message IngressLoadBalancerStatus
  1 ingress []IngressLoadBalancerIngress

message IngressLoadBalancerIngress
  1 ip string
  2 hostname string
  4 ports []PortStatus

# -- k8s.io/api policy/v1 --

message PodDisruptionBudget
  1 metadata ObjectMeta
  2 spec PodDisruptionBudgetSpec
  3 status PodDisruptionBudgetStatus

message PodDisruptionBudgetSpec
  1 minAvailable IntOrString *
  2 selector LabelSelector
  3 maxUnavailable IntOrString *
  4 unhealthyPodEvictionPolicy string *

message PodDisruptionBudgetStatus
  1 observedGeneration int64
  2 disruptedPods map[Time]
  3 disruptionsAllowed int32 !
  4 currentHealthy int32 !
  5 desiredHealthy int32 !
  6 expectedPods int32 !
  7 conditions []Condition

# -- k8s.io/api autoscaling/v1 --

message Scale
  1 metadata ObjectMeta
  2 spec ScaleSpec
  3 status ScaleStatus

message ScaleSpec
  1 replicas int32

message ScaleStatus
  1 replicas int32 !
  2 selector string
"""

#: (apiVersion, kind) -> the message of the object in ``runtime.Unknown.raw``.
_TOP_LEVEL: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "Namespace",
    ("v1", "ConfigMap"): "ConfigMap",
    ("v1", "Secret"): "Secret",
    ("v1", "ServiceAccount"): "ServiceAccount",
    ("v1", "Service"): "Service",
    ("apps/v1", "Deployment"): "Deployment",
    ("batch/v1", "Job"): "Job",
    ("batch/v1", "CronJob"): "CronJob",
    ("rbac.authorization.k8s.io/v1", "Role"): "Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "ClusterRoleBinding",
    ("networking.k8s.io/v1", "Ingress"): "Ingress",
    ("policy/v1", "PodDisruptionBudget"): "PodDisruptionBudget",
    ("autoscaling/v1", "Scale"): "Scale",
}
#: The kinds a protobuf body may hold, as ``apiVersion Kind``.
SUPPORTED_KINDS: tuple[str, ...] = tuple(f"{av} {kind}" for av, kind in _TOP_LEVEL)

_SCALARS = frozenset({"string", "bytes", "bool", "int32", "int64"})
_SPECIAL = frozenset({"Time", "MicroTime", "Quantity", "IntOrString", "FieldsV1"})


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message: its JSON name, its type and how Go would marshal it."""

    name: str
    type: str
    repeated: bool = False
    map: bool = False
    pointer: bool = False
    required: bool = False
    inline: bool = False


def _parse_schema(text: str) -> dict[str, dict[int, Field]]:
    messages: dict[str, dict[int, Field]] = {}
    current: dict[int, Field] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "message":
            current = messages.setdefault(words[1], {})
            continue
        if current is None or len(words) < 3:
            raise ValueError(f"schema line {lineno}: {raw!r}")
        number, name, type_, flags = int(words[0]), words[1], words[2], set(words[3:])
        repeated = type_.startswith("[]")
        is_map = type_.startswith("map[")
        type_ = type_.removeprefix("[]").removeprefix("map[").removesuffix("]")
        current[number] = Field(
            name, type_, repeated=repeated, map=is_map, pointer="*" in flags,
            required="!" in flags, inline="inline" in flags,
        )  # fmt: skip
    for message, fields in messages.items():
        for field in fields.values():
            known = field.type in _SCALARS or field.type in _SPECIAL or field.type in messages
            if not known:
                raise ValueError(f"schema: {message}.{field.name} has unknown type {field.type}")
    return messages


_MESSAGES = _parse_schema(_SCHEMA)

# -- the wire format -------------------------------------------------------------------

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError(f"{where}: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError(f"{where}: varint longer than 10 bytes")


def _fields(buf: bytes, where: str) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of one encoded message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError(f"{where}: field number 0 is invalid")
        value: int | bytes
        if wire == _VARINT:
            value, pos = _varint(buf, pos, where)
        elif wire == _BYTES:
            length, pos = _varint(buf, pos, where)
            if pos + length > len(buf):
                raise ProtobufError(
                    f"{where}: field {number} is {length} bytes long but only "
                    f"{len(buf) - pos} remain"
                )
            value, pos = buf[pos : pos + length], pos + length
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if pos + size > len(buf):
                raise ProtobufError(f"{where}: truncated fixed-width field {number}")
            value, pos = int.from_bytes(buf[pos : pos + size], "little"), pos + size
        else:
            raise ProtobufError(f"{where}: field {number} has unsupported wire type {wire}")
        yield number, wire, value


def _signed(value: int) -> int:
    """int32 and int64 are sent as two's complement in 64 bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


# -- decoding --------------------------------------------------------------------------


def _expect_bytes(value: int | bytes, where: str) -> bytes:
    if not isinstance(value, bytes):
        raise ProtobufError(f"{where}: expected a length-delimited value, got a number")
    return value


def _scalar(type_: str, wire: int, value: int | bytes, where: str) -> Any:
    if type_ in {"string", "bytes"}:
        data = _expect_bytes(value, where)
        if type_ == "bytes":
            return base64.b64encode(data).decode("ascii")
        return data.decode("utf-8", errors="replace")
    if wire != _VARINT or not isinstance(value, int):
        raise ProtobufError(f"{where}: expected a varint for {type_}, got wire type {wire}")
    if type_ == "bool":
        return value != 0
    number = _signed(value)
    if type_ == "int32":
        number = ((number + (1 << 31)) % (1 << 32)) - (1 << 31)
    return number


def _time(data: bytes, where: str, *, micro: bool) -> str | None:
    seconds = nanos = 0
    for number, wire, value in _fields(data, where):
        if number in (1, 2):
            n = _scalar("int64", wire, value, where)
            seconds, nanos = (n, nanos) if number == 1 else (seconds, n)
    if not seconds and not nanos:
        return None
    moment = datetime.fromtimestamp(seconds, UTC)
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1000:06d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_string(data: bytes, where: str) -> int | str:
    kind, int_val, str_val = 0, 0, ""
    for number, wire, value in _fields(data, where):
        if number == 1:
            kind = _scalar("int64", wire, value, where)
        elif number == 2:
            int_val = _scalar("int32", wire, value, where)
        elif number == 3:
            str_val = _scalar("string", wire, value, where)
    return str_val if kind == 1 else int_val


def _quantity(data: bytes, where: str) -> str:
    text = ""
    for number, wire, value in _fields(data, where):
        if number == 1:
            text = _scalar("string", wire, value, where)
    return text


def _fields_v1(data: bytes, where: str) -> Any:
    raw = b""
    for number, _wire, value in _fields(data, where):
        if number == 1:
            raw = _expect_bytes(value, where)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise ProtobufError(f"{where}: FieldsV1 does not hold JSON") from None


_ABSENT = object()


def _value(field: Field, wire: int, value: int | bytes, where: str) -> Any:
    """The JSON value of one occurrence of a singular field, or ``_ABSENT`` if Go omits it."""
    type_ = field.type
    keep_zero = field.pointer or field.required
    if type_ in _SCALARS:
        result = _scalar(type_, wire, value, where)
        return result if result or keep_zero else _ABSENT
    data = _expect_bytes(value, where)
    if type_ in {"Time", "MicroTime"}:
        stamp = _time(data, where, micro=type_ == "MicroTime")
        return _ABSENT if stamp is None else stamp
    if type_ == "IntOrString":
        result = _int_or_string(data, where)
        return result if result or keep_zero else _ABSENT
    if type_ == "Quantity":
        text = _quantity(data, where)
        return text if text or keep_zero else _ABSENT
    if type_ == "FieldsV1":
        return _fields_v1(data, where)
    return _message(data, type_, where)


def _element(field: Field, wire: int, value: int | bytes, where: str) -> Any:
    """One element of a repeated field (zero values are kept: they are list entries)."""
    if field.type in _SCALARS:
        return _scalar(field.type, wire, value, where)
    result = _value(Field(field.name, field.type, required=True), wire, value, where)
    return None if result is _ABSENT else result


def _map_entry(field: Field, data: bytes, where: str) -> tuple[str, Any]:
    key, item = "", None
    for number, wire, value in _fields(data, where):
        if number == 1:
            key = _scalar("string", wire, value, where)
        elif number == 2:
            item = _element(field, wire, value, f"{where}[{key!r}]")
    if item is None and field.type not in {"Time", "MicroTime"}:
        item = {} if field.type in _MESSAGES else ""  # an entry sent without its value
    return key, item


def _message(data: bytes, message: str, where: str) -> Obj:
    table = _MESSAGES[message]
    out: Obj = {}
    for number, wire, value in _fields(data, where):
        field = table.get(number)
        if field is None:
            continue  # a field newer than these tables: dropped, as an older server would
        path = f"{where}.{field.name}"
        if field.map:
            key, item = _map_entry(field, _expect_bytes(value, path), path)
            out.setdefault(field.name, {})[key] = item
        elif field.repeated:
            items = out.setdefault(field.name, [])
            if wire == _BYTES and field.type in {"bool", "int32", "int64"}:
                packed, pos = _expect_bytes(value, path), 0  # a packed run of varints
                while pos < len(packed):
                    element, pos = _varint(packed, pos, path)
                    items.append(_scalar(field.type, _VARINT, element, path))
            else:
                items.append(_element(field, wire, value, f"{path}[{len(items)}]"))
        else:
            result = _value(field, wire, value, path)
            if field.inline and isinstance(result, dict):
                out.update(result)
            elif result is _ABSENT:
                out.pop(field.name, None)  # the last occurrence wins, as in Go
            else:
                out[field.name] = result
    return out


def decode(body: bytes) -> Obj:
    """The JSON object of a ``application/vnd.kubernetes.protobuf`` request body."""
    if not body.startswith(MAGIC):
        raise ProtobufError(
            "the body does not start with the Kubernetes protobuf prefix 'k8s\\x00'"
        )
    api_version = kind = encoding = content_type = ""
    raw = b""
    for number, wire, value in _fields(body[len(MAGIC) :], "runtime.Unknown"):
        if number == 1:
            type_meta = _message(_expect_bytes(value, "typeMeta"), "TypeMeta", "typeMeta")
            api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
        elif number == 2:
            raw = _expect_bytes(value, "runtime.Unknown.raw")
        elif number == 3:
            encoding = _scalar("string", wire, value, "runtime.Unknown.contentEncoding")
        elif number == 4:
            content_type = _scalar("string", wire, value, "runtime.Unknown.contentType")
    if not kind or not api_version:
        raise ProtobufError("runtime.Unknown: typeMeta has no apiVersion or kind")
    if encoding:
        raise ProtobufError(f"runtime.Unknown: contentEncoding {encoding!r} is not supported")
    if content_type and content_type != MEDIA_TYPE:
        raise ProtobufError(f"runtime.Unknown: raw object in {content_type!r}, not protobuf")
    message = _TOP_LEVEL.get((api_version, kind))
    if message is None:
        raise UnsupportedKind(
            f"kubesim cannot read {api_version} {kind} from protobuf (it reads "
            f"{', '.join(k for _, k in _TOP_LEVEL)}); send it as application/json"
        )
    obj = _message(raw, message, kind)
    return {"kind": kind, "apiVersion": api_version, **obj}

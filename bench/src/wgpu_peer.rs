//! The wgpu peer: the copy kernel on the same Vulkan device, written in
//! WGSL. wgpu 26 refuses core/kernels/copy.spv through `ShaderSource::SpirV`
//! (naga's SPIR-V front end rejects the specialization-constant composite
//! `uvec4(SALT)`: "Initializer must be a const-expression"), so this is the
//! line-for-line WGSL equivalent, with SALT as a pipeline-overridable constant.

use std::time::Instant;

/// WGSL twin of core/kernels/copy.comp.
const COPY_WGSL: &str = r#"
override SALT: u32 = 0u;
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
var<push_constant> p: Params;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i < p.n) {
        dst[i] = src[i] ^ vec4<u32>(SALT);
    }
}
"#;

type R<T> = Result<T, String>;

/// Buffers of a prepared wgpu round trip.
pub struct RoundTrip {
    a: wgpu::Buffer,
    b: wgpu::Buffer,
    read: wgpu::Buffer,
    group: wgpu::BindGroup,
    len: u64,
}

/// Buffers and queries of a prepared copy.
pub struct CopyRun {
    _a: wgpu::Buffer,
    _b: wgpu::Buffer,
    group: wgpu::BindGroup,
    qs: Option<wgpu::QuerySet>,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    bytes: u64,
}

/// wgpu device, queue and the copy pipeline.
pub struct WgpuPeer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    timestamps: bool,
}

impl WgpuPeer {
    /// Opens the Vulkan adapter named `device_name`.
    pub fn new(device_name: &str) -> R<WgpuPeer> {
        let instance = wgpu::Instance::new(&wgpu::InstanceDescriptor {
            backends: wgpu::Backends::VULKAN,
            ..Default::default()
        });
        let adapter = instance
            .enumerate_adapters(wgpu::Backends::VULKAN)
            .into_iter()
            .find(|a| a.get_info().name == device_name)
            .ok_or_else(|| format!("wgpu sees no Vulkan adapter named {device_name}"))?;
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut features = wgpu::Features::PUSH_CONSTANTS;
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let limits = wgpu::Limits {
            max_push_constant_size: 128,
            max_storage_buffer_binding_size: 128 << 20,
            max_buffer_size: 256 << 20,
            ..wgpu::Limits::downlevel_defaults()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: None,
            required_features: features,
            required_limits: limits,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| e.to_string())?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("copy"),
            source: wgpu::ShaderSource::Wgsl(COPY_WGSL.into()),
        });
        let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: None,
            entries: &[0, 1].map(|i| wgpu::BindGroupLayoutEntry {
                binding: i,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: i == 0 },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            }),
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[&bgl],
            push_constant_ranges: &[wgpu::PushConstantRange {
                stages: wgpu::ShaderStages::COMPUTE,
                range: 0..4,
            }],
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: Some(&layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        Ok(WgpuPeer {
            device,
            queue,
            pipeline,
            timestamps,
        })
    }

    fn storage(&self, size: u64, extra: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE | extra,
            mapped_at_creation: false,
        })
    }

    fn bind(&self, a: &wgpu::Buffer, b: &wgpu::Buffer) -> wgpu::BindGroup {
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: a.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: b.as_entire_binding(),
                },
            ],
        })
    }

    fn wait(&self) -> R<()> {
        self.device
            .poll(wgpu::PollType::Wait)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Prepares the round trip for inputs of `len` bytes.
    pub fn prepare_roundtrip(&self, len: u64) -> RoundTrip {
        let a = self.storage(len, wgpu::BufferUsages::COPY_DST);
        let b = self.storage(len, wgpu::BufferUsages::COPY_SRC);
        let read = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: len,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let group = self.bind(&a, &b);
        RoundTrip {
            a,
            b,
            read,
            group,
            len,
        }
    }

    /// One round trip: `write_buffer` of the input, one workgroup, copy to
    /// a mappable buffer, map, read into `out`, unmap. Returns microseconds.
    pub fn roundtrip(&self, rt: &RoundTrip, input: &[u8], out: &mut [u8]) -> R<f64> {
        let n = (rt.len / 16) as u32;
        let t = Instant::now();
        self.queue.write_buffer(&rt.a, 0, input);
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &rt.group, &[]);
            pass.set_push_constants(0, &n.to_le_bytes());
            pass.dispatch_workgroups(1, 1, 1);
        }
        enc.copy_buffer_to_buffer(&rt.b, 0, &rt.read, 0, rt.len);
        self.queue.submit([enc.finish()]);
        let slice = rt.read.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        self.wait()?;
        out.copy_from_slice(&slice.get_mapped_range());
        rt.read.unmap();
        Ok(t.elapsed().as_secs_f64() * 1e6)
    }

    /// Prepares a copy of `bytes` through the copy kernel.
    pub fn prepare_copy(&self, bytes: u64) -> R<CopyRun> {
        let a = self.storage(bytes, wgpu::BufferUsages::COPY_DST);
        let b = self.storage(bytes, wgpu::BufferUsages::empty());
        self.queue
            .write_buffer(&a, 0, &vec![0x5au8; bytes as usize]);
        let group = self.bind(&a, &b);
        let qs = self.timestamps.then(|| {
            self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: None,
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            })
        });
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.wait()?;
        Ok(CopyRun {
            _a: a,
            _b: b,
            group,
            qs,
            resolve,
            read,
            bytes,
        })
    }

    /// Whether copy rates come from timestamps (else wall time of
    /// submit-to-idle).
    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }

    /// One copy; device copy rate in GB/s (bytes counted once).
    pub fn copy_rate(&self, run: &CopyRun) -> R<f64> {
        let n = (run.bytes / 16) as u32;
        let t = Instant::now();
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let writes = run.qs.as_ref().map(|qs| wgpu::ComputePassTimestampWrites {
                query_set: qs,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            });
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: writes,
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &run.group, &[]);
            pass.set_push_constants(0, &n.to_le_bytes());
            pass.dispatch_workgroups(n / 256, 1, 1);
        }
        if let Some(qs) = &run.qs {
            enc.resolve_query_set(qs, 0..2, &run.resolve, 0);
            enc.copy_buffer_to_buffer(&run.resolve, 0, &run.read, 0, 16);
        }
        self.queue.submit([enc.finish()]);
        self.wait()?;
        let wall_ns = t.elapsed().as_secs_f64() * 1e9;
        let ns = if run.qs.is_some() {
            let slice = run.read.slice(..);
            slice.map_async(wgpu::MapMode::Read, |_| {});
            self.wait()?;
            let ts: Vec<u64> = slice
                .get_mapped_range()
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect();
            run.read.unmap();
            ts[1].wrapping_sub(ts[0]) as f64 * f64::from(self.queue.get_timestamp_period())
        } else {
            wall_ns
        };
        Ok(run.bytes as f64 / ns)
    }
}

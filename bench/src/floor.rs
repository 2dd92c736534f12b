//! The floor: the least a program can do to run the copy kernel through
//! ash: one pipeline, host-visible buffers, a pre-recorded command buffer
//! (recorded again per job only where the input's length changes), one
//! submit and a fence wait per iteration. No validation of the kernel, no
//! robustness, no zeroing, no metering.

use ash::vk;
use std::time::Instant;

const FENCE_TIMEOUT_NS: u64 = 10_000_000_000;

/// Command buffer of a prepared copy.
pub struct CopyRun {
    cmd: vk::CommandBuffer,
    bytes: u64,
}

/// Buffers and command buffer of a prepared round trip.
pub struct RoundTrip {
    a: usize,
    b: usize,
    cmd: vk::CommandBuffer,
}

/// Buffers, descriptor set and command buffer of round trips whose input
/// length changes from one to the next: the command buffer is recorded
/// again for each.
pub struct VariedRoundTrip {
    a: usize,
    b: usize,
    set: vk::DescriptorSet,
    cmd: vk::CommandBuffer,
    max_len: usize,
}

struct Buf {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    map: *mut u8,
}

/// A minimal ash setup around the copy kernel.
pub struct Floor {
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
    queue: vk::Queue,
    mem: vk::PhysicalDeviceMemoryProperties,
    dsl: vk::DescriptorSetLayout,
    layout: vk::PipelineLayout,
    pipeline: vk::Pipeline,
    desc_pool: vk::DescriptorPool,
    cmd_pool: vk::CommandPool,
    fence: vk::Fence,
    query_pool: vk::QueryPool,
    timestamp_period: f64,
    spirv: Vec<u32>,
    bufs: Vec<Buf>,
    /// Specialized pipelines kept for round trips, destroyed on drop.
    specialized: Vec<vk::Pipeline>,
}

type R<T> = Result<T, String>;

fn vkerr(e: vk::Result) -> String {
    format!("{e}")
}

impl Floor {
    /// Opens the device whose name is `device_name` and builds the pipeline.
    pub fn new(device_name: &str, spirv: &[u8]) -> R<Floor> {
        // SAFETY (whole function): straightforward Vulkan setup; every
        // create info points at locals that outlive the call.
        unsafe {
            let entry = ash::Entry::load().map_err(|e| e.to_string())?;
            let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_1);
            let instance = entry
                .create_instance(
                    &vk::InstanceCreateInfo::default().application_info(&app),
                    None,
                )
                .map_err(vkerr)?;
            let pd = instance
                .enumerate_physical_devices()
                .map_err(vkerr)?
                .into_iter()
                .find(|pd| {
                    let p = instance.get_physical_device_properties(*pd);
                    p.device_name_as_c_str()
                        .map(|c| c.to_string_lossy() == device_name)
                        .unwrap_or(false)
                })
                .ok_or("device not found")?;
            let props = instance.get_physical_device_properties(pd);
            let qfi = instance
                .get_physical_device_queue_family_properties(pd)
                .iter()
                .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE))
                .ok_or("no compute queue")? as u32;
            let prio = [1.0];
            let qci = [vk::DeviceQueueCreateInfo::default()
                .queue_family_index(qfi)
                .queue_priorities(&prio)];
            let device = instance
                .create_device(
                    pd,
                    &vk::DeviceCreateInfo::default().queue_create_infos(&qci),
                    None,
                )
                .map_err(vkerr)?;
            let queue = device.get_device_queue(qfi, 0);
            let binds: Vec<_> = (0..2)
                .map(|i| {
                    vk::DescriptorSetLayoutBinding::default()
                        .binding(i)
                        .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                        .descriptor_count(1)
                        .stage_flags(vk::ShaderStageFlags::COMPUTE)
                })
                .collect();
            let dsl = device
                .create_descriptor_set_layout(
                    &vk::DescriptorSetLayoutCreateInfo::default().bindings(&binds),
                    None,
                )
                .map_err(vkerr)?;
            let ranges = [vk::PushConstantRange {
                stage_flags: vk::ShaderStageFlags::COMPUTE,
                offset: 0,
                size: 4,
            }];
            let dsls = [dsl];
            let layout = device
                .create_pipeline_layout(
                    &vk::PipelineLayoutCreateInfo::default()
                        .set_layouts(&dsls)
                        .push_constant_ranges(&ranges),
                    None,
                )
                .map_err(vkerr)?;
            let sizes = [vk::DescriptorPoolSize {
                ty: vk::DescriptorType::STORAGE_BUFFER,
                descriptor_count: 16,
            }];
            let desc_pool = device
                .create_descriptor_pool(
                    &vk::DescriptorPoolCreateInfo::default()
                        .max_sets(8)
                        .pool_sizes(&sizes),
                    None,
                )
                .map_err(vkerr)?;
            let cmd_pool = device
                .create_command_pool(
                    &vk::CommandPoolCreateInfo::default()
                        .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER)
                        .queue_family_index(qfi),
                    None,
                )
                .map_err(vkerr)?;
            let fence = device
                .create_fence(&vk::FenceCreateInfo::default(), None)
                .map_err(vkerr)?;
            let query_pool = device
                .create_query_pool(
                    &vk::QueryPoolCreateInfo::default()
                        .query_type(vk::QueryType::TIMESTAMP)
                        .query_count(2),
                    None,
                )
                .map_err(vkerr)?;
            let mut floor = Floor {
                mem: instance.get_physical_device_memory_properties(pd),
                _entry: entry,
                instance,
                device,
                queue,
                dsl,
                layout,
                pipeline: vk::Pipeline::null(),
                desc_pool,
                cmd_pool,
                fence,
                query_pool,
                timestamp_period: f64::from(props.limits.timestamp_period),
                spirv: crate::words(spirv),
                bufs: Vec::new(),
                specialized: Vec::new(),
            };
            floor.pipeline = floor.make_pipeline(None)?;
            Ok(floor)
        }
    }

    fn make_pipeline(&self, salt: Option<u32>) -> R<vk::Pipeline> {
        // SAFETY: valid create infos on a live device.
        unsafe {
            let d = &self.device;
            let module = d
                .create_shader_module(
                    &vk::ShaderModuleCreateInfo::default().code(&self.spirv),
                    None,
                )
                .map_err(vkerr)?;
            let entries = [vk::SpecializationMapEntry {
                constant_id: 0,
                offset: 0,
                size: 4,
            }];
            let data = salt.unwrap_or(0).to_le_bytes();
            let spec = vk::SpecializationInfo::default()
                .map_entries(&entries)
                .data(&data);
            let mut stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main");
            if salt.is_some() {
                stage = stage.specialization_info(&spec);
            }
            let ci = [vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(self.layout)];
            let p = d.create_compute_pipelines(vk::PipelineCache::null(), &ci, None);
            d.destroy_shader_module(module, None);
            p.map_err(|(_, e)| vkerr(e))?
                .first()
                .copied()
                .ok_or_else(|| "no pipeline".to_string())
        }
    }

    fn buffer(&mut self, size: u64) -> R<usize> {
        // SAFETY: fresh buffer and memory on a live device.
        unsafe {
            let d = &self.device;
            let buffer = d
                .create_buffer(
                    &vk::BufferCreateInfo::default()
                        .size(size)
                        .usage(vk::BufferUsageFlags::STORAGE_BUFFER),
                    None,
                )
                .map_err(vkerr)?;
            let req = d.get_buffer_memory_requirements(buffer);
            let want = |f: vk::MemoryPropertyFlags| {
                (0..self.mem.memory_type_count).find(|&i| {
                    req.memory_type_bits & (1 << i) != 0
                        && self.mem.memory_types[i as usize].property_flags.contains(f)
                })
            };
            let hv = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
            let ty = want(hv | vk::MemoryPropertyFlags::DEVICE_LOCAL)
                .or_else(|| want(hv))
                .ok_or("no host-visible memory")?;
            let memory = d
                .allocate_memory(
                    &vk::MemoryAllocateInfo::default()
                        .allocation_size(req.size)
                        .memory_type_index(ty),
                    None,
                )
                .map_err(vkerr)?;
            d.bind_buffer_memory(buffer, memory, 0).map_err(vkerr)?;
            let map = d
                .map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())
                .map_err(vkerr)? as *mut u8;
            self.bufs.push(Buf {
                buffer,
                memory,
                map,
            });
            Ok(self.bufs.len() - 1)
        }
    }

    /// A descriptor set over buffers `a` -> `b` and a command buffer.
    fn bind(&self, a: usize, b: usize) -> R<(vk::DescriptorSet, vk::CommandBuffer)> {
        // SAFETY: the pool, set layout and buffers belong to this device.
        unsafe {
            let d = &self.device;
            let dsls = [self.dsl];
            let set = d
                .allocate_descriptor_sets(
                    &vk::DescriptorSetAllocateInfo::default()
                        .descriptor_pool(self.desc_pool)
                        .set_layouts(&dsls),
                )
                .map_err(vkerr)?[0];
            let infos = [a, b].map(|i| {
                [vk::DescriptorBufferInfo {
                    buffer: self.bufs[i].buffer,
                    offset: 0,
                    range: vk::WHOLE_SIZE,
                }]
            });
            let writes = [0usize, 1].map(|i| {
                vk::WriteDescriptorSet::default()
                    .dst_set(set)
                    .dst_binding(i as u32)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .buffer_info(&infos[i])
            });
            d.update_descriptor_sets(&writes, &[]);
            let cmd = d
                .allocate_command_buffers(
                    &vk::CommandBufferAllocateInfo::default()
                        .command_pool(self.cmd_pool)
                        .command_buffer_count(1),
                )
                .map_err(vkerr)?[0];
            Ok((set, cmd))
        }
    }

    /// Records `groups` workgroups of the copy kernel over buffers `a` -> `b`.
    fn record(
        &self,
        pipeline: vk::Pipeline,
        a: usize,
        b: usize,
        n: u32,
        groups: u32,
        timed: bool,
    ) -> R<vk::CommandBuffer> {
        let (set, cmd) = self.bind(a, b)?;
        self.record_into(cmd, set, pipeline, n, groups, timed)?;
        Ok(cmd)
    }

    /// Records `groups` workgroups of the copy kernel of `n` elements into
    /// `cmd` (initial or reset, not pending), over the buffers of `set`.
    fn record_into(
        &self,
        cmd: vk::CommandBuffer,
        set: vk::DescriptorSet,
        pipeline: vk::Pipeline,
        n: u32,
        groups: u32,
        timed: bool,
    ) -> R<()> {
        // SAFETY: the command buffer, set and pipeline belong to this device.
        unsafe {
            let d = &self.device;
            d.begin_command_buffer(cmd, &vk::CommandBufferBeginInfo::default())
                .map_err(vkerr)?;
            if timed {
                d.cmd_reset_query_pool(cmd, self.query_pool, 0, 2);
                d.cmd_write_timestamp(cmd, vk::PipelineStageFlags::TOP_OF_PIPE, self.query_pool, 0);
            }
            d.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, pipeline);
            d.cmd_bind_descriptor_sets(
                cmd,
                vk::PipelineBindPoint::COMPUTE,
                self.layout,
                0,
                &[set],
                &[],
            );
            d.cmd_push_constants(
                cmd,
                self.layout,
                vk::ShaderStageFlags::COMPUTE,
                0,
                &n.to_le_bytes(),
            );
            d.cmd_dispatch(cmd, groups, 1, 1);
            if timed {
                d.cmd_write_timestamp(
                    cmd,
                    vk::PipelineStageFlags::BOTTOM_OF_PIPE,
                    self.query_pool,
                    1,
                );
            }
            let mb = [vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::SHADER_WRITE)
                .dst_access_mask(vk::AccessFlags::HOST_READ)];
            d.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                &mb,
                &[],
                &[],
            );
            d.end_command_buffer(cmd).map_err(vkerr)
        }
    }

    fn submit_wait(&self, cmd: vk::CommandBuffer) -> R<()> {
        // SAFETY: the command buffer is executable and not pending.
        unsafe {
            let d = &self.device;
            d.reset_fences(&[self.fence]).map_err(vkerr)?;
            let cmds = [cmd];
            d.queue_submit(
                self.queue,
                &[vk::SubmitInfo::default().command_buffers(&cmds)],
                self.fence,
            )
            .map_err(vkerr)?;
            d.wait_for_fences(&[self.fence], true, FENCE_TIMEOUT_NS)
                .map_err(vkerr)
        }
    }

    /// Prepares the round trip for inputs of `len` bytes: two buffers and
    /// a pre-recorded command buffer.
    pub fn prepare_roundtrip(&mut self, len: usize) -> R<RoundTrip> {
        self.prepare_roundtrip_on(self.pipeline, len)
    }

    /// Prepares the round trip for inputs of `len` bytes on a pipeline
    /// specialized with `salt`, built here once and kept: what a program
    /// that holds its pipeline does for a kernel it has seen before.
    pub fn prepare_specialized_roundtrip(&mut self, len: usize, salt: u32) -> R<RoundTrip> {
        let p = self.make_pipeline(Some(salt))?;
        self.specialized.push(p);
        self.prepare_roundtrip_on(p, len)
    }

    fn prepare_roundtrip_on(&mut self, pipeline: vk::Pipeline, len: usize) -> R<RoundTrip> {
        let a = self.buffer(len as u64)?;
        let b = self.buffer(len as u64)?;
        let cmd = self.record(pipeline, a, b, (len / 16) as u32, 1, false)?;
        Ok(RoundTrip { a, b, cmd })
    }

    /// Prepares round trips of inputs up to `max_len` bytes (at most one
    /// workgroup's 4 KiB), their length known only when each comes.
    pub fn prepare_varied(&mut self, max_len: usize) -> R<VariedRoundTrip> {
        let a = self.buffer(max_len as u64)?;
        let b = self.buffer(max_len as u64)?;
        let (set, cmd) = self.bind(a, b)?;
        Ok(VariedRoundTrip {
            a,
            b,
            set,
            cmd,
            max_len,
        })
    }

    /// One round trip of an input whose length was not known in advance:
    /// write `input`, record the dispatch for its length, submit, wait,
    /// read as many bytes into `out`. Returns microseconds.
    pub fn roundtrip_varied(&self, rt: &VariedRoundTrip, input: &[u8], out: &mut [u8]) -> R<f64> {
        let len = input.len().min(out.len());
        if len > rt.max_len || len % 16 != 0 {
            return Err(format!(
                "{len} bytes: not a multiple of 16 up to {}",
                rt.max_len
            ));
        }
        let t = Instant::now();
        // SAFETY: the mapping covers `max_len` >= `len` bytes and no work
        // is pending, so the command buffer may be reset.
        unsafe {
            std::ptr::copy_nonoverlapping(input.as_ptr(), self.bufs[rt.a].map, len);
            self.device
                .reset_command_buffer(rt.cmd, vk::CommandBufferResetFlags::empty())
                .map_err(vkerr)?;
        }
        self.record_into(rt.cmd, rt.set, self.pipeline, (len / 16) as u32, 1, false)?;
        self.submit_wait(rt.cmd)?;
        // SAFETY: the submission completed; the barrier made it visible.
        unsafe { std::ptr::copy_nonoverlapping(self.bufs[rt.b].map, out.as_mut_ptr(), len) };
        Ok(t.elapsed().as_secs_f64() * 1e6)
    }

    /// One round trip: write `input`, one workgroup copies it, read it
    /// into `out`. Returns microseconds.
    pub fn roundtrip(&self, rt: &RoundTrip, input: &[u8], out: &mut [u8]) -> R<f64> {
        let len = input.len().min(out.len());
        let t = Instant::now();
        // SAFETY: the mappings cover `len` bytes and no work is pending.
        unsafe { std::ptr::copy_nonoverlapping(input.as_ptr(), self.bufs[rt.a].map, len) };
        self.submit_wait(rt.cmd)?;
        // SAFETY: the submission completed; the barrier made it visible.
        unsafe { std::ptr::copy_nonoverlapping(self.bufs[rt.b].map, out.as_mut_ptr(), len) };
        Ok(t.elapsed().as_secs_f64() * 1e6)
    }

    /// Prepares a copy of `bytes` through the copy kernel, with a
    /// timestamp pair around the dispatch.
    pub fn prepare_copy(&mut self, bytes: u64) -> R<CopyRun> {
        let a = self.buffer(bytes)?;
        let b = self.buffer(bytes)?;
        // SAFETY: mapping covers `bytes`.
        unsafe { std::ptr::write_bytes(self.bufs[a].map, 0x5a, bytes as usize) };
        let n = (bytes / 16) as u32;
        let cmd = self.record(self.pipeline, a, b, n, n / 256, true)?;
        Ok(CopyRun { cmd, bytes })
    }

    /// One copy; device copy rate in GB/s (bytes counted once).
    pub fn copy_rate(&self, run: &CopyRun) -> R<f64> {
        self.submit_wait(run.cmd)?;
        let mut ts = [0u64; 2];
        // SAFETY: both queries were written by the completed submission.
        unsafe {
            self.device
                .get_query_pool_results(self.query_pool, 0, &mut ts, vk::QueryResultFlags::TYPE_64)
                .map_err(vkerr)?
        };
        let ns = (ts[1].wrapping_sub(ts[0])) as f64 * self.timestamp_period;
        Ok(run.bytes as f64 / ns)
    }

    /// Microseconds from a never-seen specialization to its first dispatch
    /// completing (shader module, pipeline, record, submit, wait).
    pub fn pipeline_cold(&mut self, salts: std::ops::Range<u32>) -> R<Vec<f64>> {
        let a = self.buffer(4096)?;
        let b = self.buffer(4096)?;
        let mut times = Vec::new();
        for salt in salts {
            let t = Instant::now();
            let p = self.make_pipeline(Some(salt))?;
            let cmd = self.record(p, a, b, 256, 1, false)?;
            self.submit_wait(cmd)?;
            times.push(t.elapsed().as_secs_f64() * 1e6);
            // SAFETY: the work using them completed.
            unsafe {
                self.device.free_command_buffers(self.cmd_pool, &[cmd]);
                self.device.destroy_pipeline(p, None);
                self.device
                    .reset_descriptor_pool(self.desc_pool, vk::DescriptorPoolResetFlags::empty())
                    .map_err(vkerr)?;
            }
        }
        Ok(times)
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        // SAFETY: wait for idle, then destroy everything this struct created.
        unsafe {
            let d = &self.device;
            let _ = d.device_wait_idle();
            for b in self.bufs.drain(..) {
                d.destroy_buffer(b.buffer, None);
                d.free_memory(b.memory, None);
            }
            d.destroy_query_pool(self.query_pool, None);
            d.destroy_fence(self.fence, None);
            d.destroy_command_pool(self.cmd_pool, None);
            d.destroy_descriptor_pool(self.desc_pool, None);
            d.destroy_pipeline(self.pipeline, None);
            for p in self.specialized.drain(..) {
                d.destroy_pipeline(p, None);
            }
            d.destroy_pipeline_layout(self.layout, None);
            d.destroy_descriptor_set_layout(self.dsl, None);
            d.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}
